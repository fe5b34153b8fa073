package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testuid"
)

// TestKeysInstallRefusesAnotherUsersSocket: another user (nobody) put
// its own socket where root's `splicefleet gossip-key install` looks for the
// agent. The CLI sends it nothing (not the gossip key), says why, and
// does not claim success.
func TestKeysInstallRefusesAnotherUsersSocket(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test acts as another user and needs root (make test runs as root)")
	}
	c := newCLI(t)
	for _, d := range []string{filepath.Dir(c.dir), c.dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := c.path("run")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "ctl.sock")
	ln, err := testuid.ListenUnix(65534, 65534, socket)
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = w.Write([]byte(`{"done":"install"}`))
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	key := "c2VjcmV0IGdvc3NpcCBrZXkgb2YgdGhlIGNsdXN0ZXI="
	code, out, errs := c.run("gossip-key", "install", key, "--control-socket", socket)
	if code != exitError || strings.Contains(out, "done") ||
		!strings.Contains(errs, "is served by a process of uid 65534") || !strings.Contains(errs, "refusing to send it anything") {
		t.Errorf("keys install to nobody's socket: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("nobody's socket got %d requests", n)
	}
}
