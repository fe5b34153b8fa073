// Package gpgtest runs the real GnuPG for tests that check splicefleet
// against it: keys gpg made, signatures gpg made, and what gpg says about
// a keyring.
//
// Each [GPG] has a private home folder, removed (and its agent stopped)
// when the test ends. A missing gpg fails the test with how to install it:
// the interop tests are not optional. It runs a program (os/exec), which
// depguard allows here because only tests import this package.
package gpgtest

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// GPG is GnuPG in a private home folder.
type GPG struct {
	t    testing.TB
	Home string
}

// New makes a GnuPG home for t.
func New(t testing.TB) *GPG {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Fatal("gpg is not installed: run `make test-deps` (or apt-get install gnupg); the interop tests need the real GnuPG")
	}
	home, err := os.MkdirTemp("", "sf-gpg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	g := &GPG{t: t, Home: home}
	t.Cleanup(func() {
		cmd := exec.Command("gpgconf", "--kill", "all")
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		_ = cmd.Run()
		_ = os.RemoveAll(home)
	})
	return g
}

// Run runs gpg in batch mode with args and returns its combined output.
func (g *GPG) Run(args ...string) (string, error) {
	return g.RunStdin("", args...)
}

// RunStdin is Run with stdin.
func (g *GPG) RunStdin(stdin string, args ...string) (string, error) {
	g.t.Helper()
	cmd := exec.Command("gpg", append([]string{"--batch", "--no-tty", "--pinentry-mode", "loopback"}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.Home)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Must is Run that fails the test when gpg does.
func (g *GPG) Must(args ...string) string {
	g.t.Helper()
	out, err := g.Run(args...)
	if err != nil {
		g.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Output runs gpg and returns only its standard output (exports, which
// must not be mixed with messages), failing the test when gpg fails.
func (g *GPG) Output(args ...string) []byte {
	g.t.Helper()
	cmd := exec.Command("gpg", append([]string{"--batch", "--no-tty", "--pinentry-mode", "loopback"}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.Home)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		g.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

var fprLine = regexp.MustCompile(`(?m)^fpr:+([0-9A-F]{40}):`)

// Fingerprint asks gpg (not splicefleet) for a key file's fingerprint:
// the first primary key's.
func (g *GPG) Fingerprint(armored []byte) string {
	g.t.Helper()
	out, err := g.RunStdin(string(armored), "--with-colons", "--show-keys")
	if err != nil {
		g.t.Fatalf("gpg --show-keys: %v\n%s", err, out)
	}
	m := fprLine.FindStringSubmatch(out)
	if m == nil {
		g.t.Fatalf("no fingerprint in gpg output:\n%s", out)
	}
	return m[1]
}

// Fingerprints lists the primary keys' fingerprints of the keys in
// GnuPG's keyring that match who, in gpg's order.
func (g *GPG) Fingerprints(who string) []string {
	g.t.Helper()
	out := g.Must("--with-colons", "--list-keys", who)
	var fprs []string
	pub := false
	for line := range strings.Lines(out) {
		switch {
		case strings.HasPrefix(line, "pub:"):
			pub = true
		case strings.HasPrefix(line, "sub:"):
			pub = false
		case pub && strings.HasPrefix(line, "fpr:"):
			if m := fprLine.FindStringSubmatch(line); m != nil {
				fprs = append(fprs, m[1])
			}
			pub = false
		}
	}
	return fprs
}
