package splice_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/internal/fileperm"
	"github.com/splicefleet/splicefleet/internal/gpgtest"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// The tests of this file are the attacks on a host's stored patches:
// what Boot and undo's put-back load again, and a state directory another
// user can write.

// verdicts collects OnTrustVerdict's calls.
type verdicts []splice.TrustVerdict

func (v *verdicts) hook(c *splice.HostConfig) {
	c.OnTrustVerdict = func(x splice.TrustVerdict) { *v = append(*v, x) }
}

func patchView(t *testing.T, h *splice.Host, id string) splice.PatchView {
	t.Helper()
	v, err := h.View()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range v.Patches {
		if p.ID == id {
			return p
		}
	}
	t.Fatalf("no patch %s in the view", id)
	return splice.PatchView{}
}

// A bundle that expired after its patch was applied is loaded again at
// boot, with a WARN-level verdict and a note that View shows: a fix that
// is on the host does not vanish because time passed.
func TestBootKeepsPatchWhoseBundleExpiredSinceItWasApplied(t *testing.T) {
	e := newHostEnv(t)
	expires := now.Add(time.Hour)
	h := e.mustOpen()
	e.apply(h, e.bundle("fix", 1, []string{"f"}, func(m *splice.Manifest) { m.Expires = &expires }))
	h.Close()
	if err := sim.Reboot(e.simDir, ""); err != nil {
		t.Fatal(err)
	}
	later := now.Add(48 * time.Hour)
	var got verdicts
	h = e.mustOpen(got.hook, func(c *splice.HostConfig) { c.Now = func() time.Time { return later } })
	done, err := h.Boot(context.Background())
	if err != nil || len(done) != 1 {
		t.Fatalf("boot: %v, %v", done, err)
	}
	if k := e.kernelState(); k != "livepatch_fix_1:on | modules livepatch_fix_1" {
		t.Fatalf("kernel: %s", k)
	}
	p := patchView(t, h, "fix")
	if p.State != splice.StateApplied || !strings.Contains(p.TrustNote, "bundle expired at 2026-11-01T13:00:00Z, after it was applied") {
		t.Fatalf("patch: state %s, note %q", p.State, p.TrustNote)
	}
	if len(got) != 1 || got[0].Verdict != splice.VerdictKeptExpired || got[0].ID != "fix" {
		t.Fatalf("verdicts: %+v", got)
	}
}

// gpgPublisher is a publisher whose key GnuPG made, so that the key can be
// revoked the way operators revoke one.
type gpgPublisher struct {
	*gpgtest.GPG
	t   *testing.T
	fpr string
}

func gpgTime(at time.Time) string {
	return "--faked-system-time=" + at.UTC().Format("20060102T150405") + "!"
}

func newGPGPublisher(t *testing.T) *gpgPublisher {
	g := &gpgPublisher{GPG: gpgtest.New(t), t: t}
	g.Must(gpgTime(now.Add(-48*time.Hour)), "--passphrase", "", "--quick-gen-key", "Publisher <pub@example.com>", "ed25519", "sign", "never")
	g.fpr = g.Fingerprints("=Publisher <pub@example.com>")[0]
	return g
}

// policy is a threshold-1 policy of the key as gpg exports it now.
func (g *gpgPublisher) policy() *signing.Policy {
	g.t.Helper()
	kr, err := signing.ReadKeyring(g.Output("--armor", "--export", g.fpr))
	if err != nil {
		g.t.Fatal(err)
	}
	p, err := signing.NewPolicy(kr, 1, signing.WithClock(func() time.Time { return now }))
	if err != nil {
		g.t.Fatal(err)
	}
	return p
}

func (g *gpgPublisher) bundle(name, id string, version uint64) *splice.Bundle {
	g.t.Helper()
	mod := fakemodule.Build(fakemodule.Options{Name: name, Livepatch: true, Functions: []string{"f"}})
	b, err := splice.New(splice.Manifest{ID: id, Version: version, Target: splice.Target{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64"},
		Module: splice.ModuleRef{Name: name}, Functions: []string{"f"}, Created: now.Add(-time.Hour)}, mod)
	if err != nil {
		g.t.Fatal(err)
	}
	in := filepath.Join(g.t.TempDir(), "manifest")
	if err := os.WriteFile(in, b.Manifest, 0o600); err != nil {
		g.t.Fatal(err)
	}
	if _, err := b.AddSignature(g.Output(gpgTime(now.Add(-time.Minute)), "--local-user", g.fpr+"!", "--detach-sign", "-o", "-", in)); err != nil {
		g.t.Fatal(err)
	}
	return b
}

// revoke imports the revocation certificate gpg made with the key.
func (g *gpgPublisher) revoke() {
	g.t.Helper()
	raw, err := os.ReadFile(filepath.Join(g.Home, "openpgp-revocs.d", g.fpr+".rev"))
	if err != nil {
		g.t.Fatal(err)
	}
	cert := strings.Replace(string(raw), ":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----", 1)
	if out, err := g.RunStdin(cert, "--import"); err != nil {
		g.t.Fatalf("import revocation: %v\n%s", err, out)
	}
}

// A patch whose signer's key was revoked after it was applied is not
// loaded again at boot: the key may be compromised. It is marked failed
// with the reason, and the verdict is handed over.
func TestBootRefusesPatchWhoseSignerWasRevoked(t *testing.T) {
	e := newHostEnv(t)
	g := newGPGPublisher(t)
	h := e.mustOpen(func(c *splice.HostConfig) { c.Policy = g.policy() })
	if _, err := h.Apply(context.Background(), g.bundle("livepatch_fix_1", "fix", 1), g.policy()); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if err := sim.Reboot(e.simDir, ""); err != nil {
		t.Fatal(err)
	}
	g.revoke()
	var got verdicts
	h = e.mustOpen(got.hook, func(c *splice.HostConfig) { c.Policy = g.policy() })
	done, err := h.Boot(context.Background())
	if len(done) != 0 || !splice.IsReject(err) || !errors.Is(err, signing.ErrRevokedKey) {
		t.Fatalf("boot: %v, %v", done, err)
	}
	if k := e.kernelState(); k != " | modules " {
		t.Fatalf("kernel: %q", k)
	}
	p := patchView(t, h, "fix")
	if p.State != splice.StateFailed || !strings.Contains(p.Reason, "boot: refused by the trust policy: signature check failed") || !strings.Contains(p.Reason, "key revoked") {
		t.Fatalf("patch: state %s, reason %q", p.State, p.Reason)
	}
	if len(got) != 1 || got[0].Verdict != splice.VerdictRefused || !strings.Contains(got[0].Reason, "key revoked") {
		t.Fatalf("verdicts: %+v", got)
	}
	// And the next boot does not try it again.
	h.Close()
	if err := sim.Reboot(e.simDir, ""); err != nil {
		t.Fatal(err)
	}
	h = e.mustOpen(func(c *splice.HostConfig) { c.Policy = g.policy() })
	if done, err := h.Boot(context.Background()); len(done) != 0 || err != nil {
		t.Fatalf("second boot: %v, %v", done, err)
	}
}

// Undoing an upgrade puts back the version it replaced only when that
// version's bundle still meets the policy: revoked since, it stays off.
func TestPutBackRefusesPatchWhoseSignerWasRevoked(t *testing.T) {
	e := newHostEnv(t)
	g := newGPGPublisher(t)
	both := func() *signing.Policy {
		mine, err := e.signer.Public().Armored()
		if err != nil {
			t.Fatal(err)
		}
		kr, err := signing.ReadKeyring(append(g.Output("--armor", "--export", g.fpr), mine...))
		if err != nil {
			t.Fatal(err)
		}
		p, err := signing.NewPolicy(kr, 1, signing.WithClock(func() time.Time { return now }))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	h := e.mustOpen(func(c *splice.HostConfig) { c.Policy = both() })
	if _, err := h.Apply(context.Background(), g.bundle("livepatch_x_1", "x", 1), both()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Apply(context.Background(), e.bundle("x", 2, []string{"f"}), both()); err != nil {
		t.Fatal(err)
	}
	h.Close()
	g.revoke()
	var got verdicts
	h = e.mustOpen(got.hook, func(c *splice.HostConfig) { c.Policy = both() })
	undone, back, err := h.Undo(context.Background(), "x")
	if undone == nil || undone.Version != 2 || len(back) != 0 || !errors.Is(err, signing.ErrRevokedKey) {
		t.Fatalf("undo: %v, put back %v, %v", undone, back, err)
	}
	if k := e.kernelState(); k != " | modules " {
		t.Fatalf("kernel: %q", k)
	}
	if s := states(t, h); s != "x@1=failed x@2=reverted" {
		t.Fatalf("states: %s", s)
	}
	if len(got) != 1 || got[0].Verdict != splice.VerdictRefused || got[0].Version != 1 {
		t.Fatalf("verdicts: %+v", got)
	}
}

// writeJournal rewrites the journal of a state directory with edit.
func editJournal(t *testing.T, stateDir string, edit func(j map[string]any)) {
	t.Helper()
	path := filepath.Join(stateDir, splice.JournalFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatal(err)
	}
	edit(j)
	if raw, err = json.Marshal(j); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// plantUnsigned puts an unsigned bundle of the attacker's module in the
// store and points the journal's applied patch at it, as a user who can
// write the state directory would.
func plantUnsigned(t *testing.T, e *hostEnv) {
	t.Helper()
	mod := fakemodule.Build(fakemodule.Options{Name: "livepatch_fix_1", Livepatch: true, Functions: []string{"f"}, Extra: map[string]string{"author": "attacker"}})
	b, err := splice.New(splice.Manifest{ID: "fix", Version: 1, Target: splice.Target{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64"},
		Module: splice.ModuleRef{Name: "livepatch_fix_1"}, Functions: []string{"f"}, Created: now}, mod)
	if err != nil {
		t.Fatal(err)
	}
	head, err := splice.EncodeHead(&splice.Head{Manifest: b.Manifest})
	if err != nil {
		t.Fatal(err)
	}
	digest := splice.Digest(b.Manifest)
	if err := os.WriteFile(filepath.Join(e.stateDir, splice.StoreDir, "heads", digest+".json"), head, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.stateDir, splice.StoreDir, "modules", splice.Digest(mod)), mod, 0o600); err != nil {
		t.Fatal(err)
	}
	editJournal(t, e.stateDir, func(j map[string]any) {
		p := j["patches"].([]any)[0].(map[string]any)
		p["manifest_digest"], p["module_sha256"], p["signers"] = digest, splice.Digest(mod), nil
	})
}

// An unsigned bundle and a journal crafted to name it are refused at boot
// even in a state directory with the right owner and mode, and a state
// directory that another user could write is refused before anything in
// it is read.
func TestBootRefusesUnsignedBundleAndCraftedJournal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns the state directory to uid 65534 and must run as root (as the project's tests do)")
	}
	e := newHostEnv(t)
	h := e.mustOpen()
	e.apply(h, e.bundle("fix", 1, []string{"f"}))
	h.Close()
	if err := sim.Reboot(e.simDir, ""); err != nil {
		t.Fatal(err)
	}
	plantUnsigned(t, e)
	before := e.snapshot()

	t.Run("writable by others", func(t *testing.T) {
		if err := os.Chmod(e.stateDir, 0o777); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = os.Chmod(e.stateDir, 0o700) }()
		_, err := e.open()
		want := "open host: " + e.stateDir + ": writable by group and others (owner uid 0, mode 0777): refusing a path another user could change; fix: chmod go-w " + e.stateDir
		if !errors.Is(err, fileperm.ErrUnsafe) || err.Error() != want {
			t.Fatalf("got  %v\nwant %s", err, want)
		}
	})
	t.Run("owned by another user", func(t *testing.T) {
		for _, sub := range []string{"", filepath.Join(splice.StoreDir, "heads"), splice.JournalFile} {
			p := filepath.Join(e.stateDir, sub)
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			_, err := e.open()
			if !errors.Is(err, fileperm.ErrUnsafe) || !strings.Contains(err.Error(), p+": owned by uid 65534") || !strings.Contains(err.Error(), "fix: chown root "+p) {
				t.Errorf("%s: %v", sub, err)
			}
			if err := os.Chown(p, 0, 0); err != nil {
				t.Fatal(err)
			}
		}
	})
	if got := e.snapshot(); !sameMap(before, got) {
		t.Fatal("a refused open changed the state or the kernel")
	}
	t.Run("right owner and mode", func(t *testing.T) {
		var got verdicts
		h := e.mustOpen(got.hook)
		done, err := h.Boot(context.Background())
		if len(done) != 0 || !errors.Is(err, splice.ErrSignature) || !errors.Is(err, signing.ErrNoSignatures) {
			t.Fatalf("boot: %v, %v", done, err)
		}
		if k := e.kernelState(); k != " | modules " {
			t.Fatalf("kernel: %q", k)
		}
		if p := patchView(t, h, "fix"); p.State != splice.StateFailed || !strings.Contains(p.Reason, "no signatures") {
			t.Fatalf("patch: %s %q", p.State, p.Reason)
		}
		if len(got) != 1 || got[0].Verdict != splice.VerdictRefused {
			t.Fatalf("verdicts: %+v", got)
		}
	})
}

// A `lock` link in the state directory is not followed: root does not
// truncate or write the file it names.
func TestLockSymlinkIsNotFollowed(t *testing.T) {
	e := newHostEnv(t)
	if err := os.MkdirAll(e.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(victim, []byte("root:x:0:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(e.stateDir, "lock")); err != nil {
		t.Fatal(err)
	}
	_, err := e.open()
	if !errors.Is(err, fileperm.ErrSymlink) || !strings.Contains(err.Error(), filepath.Join(e.stateDir, "lock")+" is a symbolic link") {
		t.Fatalf("open: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "root:x:0:0\n" {
		t.Fatalf("the file the link names changed: %q", b)
	}
}

// A stored module replaced by a link is refused, not followed.
func TestStoredModuleSymlinkIsRefused(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	p := e.apply(h, e.bundle("fix", 1, []string{"f"}))
	h.Close()
	if err := sim.Reboot(e.simDir, ""); err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(e.stateDir, splice.StoreDir, "modules", p.ModuleDigest)
	moved := filepath.Join(t.TempDir(), "elsewhere.ko")
	if err := os.Rename(mod, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(moved, mod); err != nil {
		t.Fatal(err)
	}
	h = e.mustOpen()
	if done, err := h.Boot(context.Background()); len(done) != 0 || !errors.Is(err, fileperm.ErrSymlink) {
		t.Fatalf("boot: %v, %v", done, err)
	}
}
