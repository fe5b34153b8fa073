package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/fileperm"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// TestBootRefusalIsCounted: `splicefleet boot` refuses to load a stored
// bundle whose signer is no longer trusted, before the agent starts; the
// journal keeps the verdict, and the agent counts it once in
// splicefleet_stored_bundle_verdicts_total, and shows the patch failed.
func TestBootRefusalIsCounted(t *testing.T) {
	f := newTestFleet(t)
	cfg := f.config("node-00")
	kernel := strings.TrimPrefix(cfg.Kernel, "sim:")
	if err := sim.Init(kernel, sim.Config{}); err != nil {
		t.Fatal(err)
	}
	k, err := testKernel(cfg.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	policy := f.policy(t).(splice.StoredVerifier)
	h, err := splice.OpenHost(context.Background(), splice.HostConfig{StateDir: cfg.StateDir, Kernel: k, Inspect: InspectModule, Logger: warnLogger(t), Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	b, err := splice.Decode(bytes.NewReader(f.bundleFixing(t, "fix", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Apply(context.Background(), b, policy); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if err := sim.Reboot(kernel, ""); err != nil {
		t.Fatal(err)
	}
	// The publisher's key left the keyring (the operator no longer
	// trusts it): boot, under the new policy, refuses the stored bundle.
	other, err := signing.GenerateSigner("Other <o@example.com>", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	newPolicy, err := signing.NewPolicy(signing.NewKeyring(other.Public()), 1)
	if err != nil {
		t.Fatal(err)
	}
	h, err = splice.OpenHost(context.Background(), splice.HostConfig{StateDir: cfg.StateDir, Kernel: k, Inspect: InspectModule, Logger: warnLogger(t), Policy: newPolicy})
	if err != nil {
		t.Fatal(err)
	}
	if done, err := h.Boot(context.Background()); len(done) != 0 || !errors.Is(err, signing.ErrUnknownSigner) {
		t.Fatalf("boot: %v, %v", done, err)
	}
	h.Close()

	refused := func(n string) string { return `splicefleet_stored_bundle_verdicts_total{verdict="refused"} ` + n }
	a := f.start(cfg)
	eventually(t, 10*time.Second, "the agent counts the refusal", func() error {
		return contains(scrape(t, a), refused("1"))
	})
	if err := contains(scrape(t, a), `splicefleet_patch_state{module="lp_fix",patch="fix",state="failed",version="1"} 1`); err != nil {
		t.Error(err)
	}
	f.stop(cfg.NodeName)
	a = f.start(cfg)
	waitStarted(t, a)
	if err := contains(scrape(t, a), refused("0")); err != nil {
		t.Errorf("a restarted agent counts the refusal again: %v", err)
	}
}

// TestAgentRefusesStateDirOthersCanWrite: the agent does not start on a
// state directory another user could write.
func TestAgentRefusesStateDirOthersCanWrite(t *testing.T) {
	f := newTestFleet(t)
	cfg := f.config("node-00")
	if err := sim.Init(strings.TrimPrefix(cfg.Kernel, "sim:"), sim.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfg.StateDir, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := New(withSimKernel(t, Options{Config: cfg, Logger: warnLogger(t)}))
	if !errors.Is(err, fileperm.ErrUnsafe) || !strings.Contains(err.Error(), "state_dir: "+cfg.StateDir+": writable by group and others") {
		t.Fatalf("New: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "store")); err == nil {
		t.Fatal("the agent wrote into the refused state directory")
	}
}
