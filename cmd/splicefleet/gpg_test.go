package main

import (
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/internal/gpgtest"
)

// gpg runs the real GnuPG in a private home folder (internal/gpgtest,
// which the signing package's tests share).
type gpg struct{ *gpgtest.GPG }

func newGPG(t *testing.T) *gpg { return &gpg{gpgtest.New(t)} }

func (g *gpg) run(args ...string) (string, error) { return g.Run(args...) }

func (g *gpg) must(args ...string) string { return g.Must(args...) }

// fingerprint asks gpg (not splicefleet) for a key file's fingerprint.
func (g *gpg) fingerprint(armored []byte) string { return g.Fingerprint(armored) }

// A bundle signed by splicefleet verifies with gpg --verify over the
// manifest, and gpg notices when the manifest is changed.
func TestGnuPGVerifiesSpliceFleetSignatures(t *testing.T) {
	c := newCLI(t)
	g := newGPG(t)
	bundle := c.publish(2, 2)
	g.must("--import", c.path("trusted.asc"))

	manifest := c.write("fix.manifest", []byte(c.ok("manifest", bundle)))
	sigs := c.write("fix.sig.asc", []byte(c.ok("manifest", "--signatures", bundle)))
	out := g.must("--status-fd", "1", "--verify", sigs, manifest)
	if n := strings.Count(out, "[GNUPG:] GOODSIG "); n != 2 {
		t.Fatalf("gpg saw %d good signatures, want 2:\n%s", n, out)
	}
	for _, key := range []string{"keya.pub.asc", "keyb.pub.asc"} {
		fpr := g.fingerprint(c.read(key))
		if !strings.Contains(out, "[GNUPG:] VALIDSIG "+fpr) {
			t.Errorf("gpg did not report a valid signature by %s:\n%s", fpr, out)
		}
	}

	tampered := c.write("tampered.manifest", []byte(strings.Replace(c.ok("manifest", bundle), "demo fix", "demo fiX", 1)))
	if out, err := g.run("--status-fd", "1", "--verify", sigs, tampered); err == nil || !strings.Contains(out, "[GNUPG:] BADSIG") {
		t.Fatalf("gpg accepted a tampered manifest:\n%s", out)
	}
}

// Signatures made by GnuPG with keys GnuPG generated (Ed25519 and RSA),
// attached with sign --signature, pass splicefleet verify; and a secret
// key exported by GnuPG with a passphrase signs with sign --key.
func TestSpliceFleetVerifiesGnuPGSignatures(t *testing.T) {
	c := newCLI(t)
	g := newGPG(t)
	bundle := c.publish(1, 0) // unsigned; key a is splicefleet's own
	g.must("--passphrase", "", "--quick-gen-key", "Ops Ed <ed@example.com>", "ed25519", "sign", "never")
	g.must("--passphrase", "", "--quick-gen-key", "Ops RSA <rsa@example.com>", "rsa3072", "sign", "never")
	g.must("--passphrase", "pw", "--quick-gen-key", "Ops Protected <prot@example.com>", "ed25519", "sign", "never")
	manifest := c.write("fix.manifest", []byte(c.ok("manifest", bundle)))

	for _, who := range []string{"ed@example.com", "rsa@example.com"} {
		sig := c.path(who + ".sig.asc")
		g.must("--local-user", who, "--armor", "--detach-sign", "-o", sig, manifest)
		c.ok("sign", "--signature", sig, bundle)
		c.write(who+".pub.asc", []byte(g.must("--armor", "--export", who)))
		out := c.ok("verify", "--keyring", c.path(who+".pub.asc"), bundle)
		if !strings.Contains(out, who) {
			t.Errorf("verify with %s's key does not name it:\n%s", who, out)
		}
	}

	// A secret key exported by gpg, protected by a passphrase.
	c.write("prot.sec.asc", []byte(g.must("--passphrase", "pw", "--armor", "--export-secret-keys", "prot@example.com")))
	c.env["SPLICEFLEET_PASSPHRASE"] = "pw"
	c.ok("sign", "--key", c.path("prot.sec.asc"), bundle)
	delete(c.env, "SPLICEFLEET_PASSPHRASE")

	// All four keys, from both tools, meet a threshold of four.
	var ring []byte
	ring = append(ring, c.read("keya.pub.asc")...)
	for _, who := range []string{"ed@example.com", "rsa@example.com", "prot@example.com"} {
		ring = append(ring, g.must("--armor", "--export", who)...)
	}
	c.write("all.asc", ring)
	c.ok("sign", "--key", c.path("keya.sec.asc"), bundle)
	out := c.ok("verify", "--keyring", c.path("all.asc"), "--threshold", "4", bundle)
	if !strings.Contains(out, "signed by 4 of 4 required keys") {
		t.Fatalf("verify: %s", out)
	}
	// And gpg agrees with every signature in the bundle.
	g.must("--import", c.path("keya.pub.asc"))
	sigs := c.write("all.sig.asc", []byte(c.ok("manifest", "--signatures", bundle)))
	if out := g.must("--status-fd", "1", "--verify", sigs, manifest); strings.Count(out, "[GNUPG:] GOODSIG ") != 4 {
		t.Fatalf("gpg does not see four good signatures:\n%s", out)
	}
}
