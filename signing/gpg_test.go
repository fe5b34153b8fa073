package signing

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/gpgtest"
)

// The tests of this file use keys and signatures GnuPG made, and check
// that gpg reads a keyring the way ReadKeyring does.

// gpgKeys is a GnuPG home with helpers for keys made in it.
type gpgKeys struct {
	*gpgtest.GPG
	t   *testing.T
	dir string
}

func newGPGKeys(t *testing.T) *gpgKeys {
	return &gpgKeys{GPG: gpgtest.New(t), t: t, dir: t.TempDir()}
}

// fakedTime is gpg's option to act at another time (frozen).
func fakedTime(at time.Time) string {
	return "--faked-system-time=" + at.UTC().Format("20060102T150405") + "!"
}

// genKey makes an Ed25519 signing key for uid at created and returns its
// fingerprint.
func (g *gpgKeys) genKey(uid, expire string, created time.Time) string {
	g.t.Helper()
	g.Must(fakedTime(created), "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", expire)
	fprs := g.Fingerprints("=" + uid)
	if len(fprs) != 1 {
		g.t.Fatalf("gpg lists %d keys for %s", len(fprs), uid)
	}
	return fprs[0]
}

// export is gpg's armored export of one key, as it stands now.
func (g *gpgKeys) export(fpr string) []byte {
	g.t.Helper()
	return g.Output("--armor", "--export", fpr)
}

// sign makes gpg sign message with the primary key fpr (the ! says:
// exactly this key), at the given time, and returns the binary signature.
func (g *gpgKeys) sign(fpr string, message []byte, at time.Time) []byte {
	g.t.Helper()
	in := filepath.Join(g.dir, "message")
	if err := os.WriteFile(in, message, 0o600); err != nil {
		g.t.Fatal(err)
	}
	return g.Output(fakedTime(at), "--local-user", fpr+"!", "--detach-sign", "-o", "-", in)
}

// revoke imports the revocation certificate gpg made with the key.
func (g *gpgKeys) revoke(fpr string) {
	g.t.Helper()
	raw, err := os.ReadFile(filepath.Join(g.Home, "openpgp-revocs.d", fpr+".rev"))
	if err != nil {
		g.t.Fatal(err)
	}
	// gpg writes the certificate with a ':' before its armor line, so that
	// it is not imported by accident.
	cert := strings.Replace(string(raw), ":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----", 1)
	if out, err := g.RunStdin(cert, "--import"); err != nil {
		g.t.Fatalf("import revocation: %v\n%s", err, out)
	}
}

// listedBy imports a keyring into a fresh GnuPG home and returns what
// gpg --list-keys says about it.
func listedBy(t *testing.T, keyring []byte) string {
	t.Helper()
	fresh := gpgtest.New(t)
	if out, err := fresh.RunStdin(string(keyring), "--import"); err != nil {
		t.Fatalf("gpg --import: %v\n%s", err, out)
	}
	return fresh.Must("--list-keys")
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// TestKeyringMergesAppendedRevocation: an operator appends a key's revoked
// re-export to a keyring that holds its old export, as the publisher's
// guide says. gpg shows the key revoked, and so does ReadKeyring, in
// either order: a signature by the key no longer counts.
func TestKeyringMergesAppendedRevocation(t *testing.T) {
	g := newGPGKeys(t)
	now := time.Now()
	fpr := g.genKey("Release <rel@example.com>", "never", now.Add(-48*time.Hour))
	sig := g.sign(fpr, msg, now.Add(-24*time.Hour))
	old := g.export(fpr)
	kr, err := ReadKeyring(old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mustPolicy(t, kr, 1).Verify(msg, [][]byte{sig}); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}
	g.revoke(fpr)
	revoked := g.export(fpr)

	for name, ring := range map[string][]byte{"revoked appended": cat(old, revoked), "revoked first": cat(revoked, old)} {
		t.Run(name, func(t *testing.T) {
			if out := listedBy(t, ring); !strings.Contains(out, "revoked") {
				t.Fatalf("gpg does not show the key revoked:\n%s", out)
			}
			kr, err := ReadKeyring(ring)
			if err != nil {
				t.Fatal(err)
			}
			if kr.Len() != 1 {
				t.Fatalf("keyring holds %d keys, want the one key merged", kr.Len())
			}
			_, err = mustPolicy(t, kr, 1).Verify(msg, [][]byte{sig})
			if !errors.Is(err, ErrRevokedKey) || !strings.Contains(err.Error(), fpr) {
				t.Fatalf("err = %v, want %s revoked", err, fpr)
			}
		})
	}
}

// TestKeyringNewestSelfSignatureDecidesExpiry: copies of one key whose
// self-signatures set different expiry times are merged as gpg merges
// them: the newest self-signature wins, in either order of the copies.
func TestKeyringNewestSelfSignatureDecidesExpiry(t *testing.T) {
	g := newGPGKeys(t)
	now := time.Now()
	created := now.Add(-10 * 24 * time.Hour)

	// Shortened: made without expiry, then (5 days ago) set to expire a
	// day later, so it expired 4 days ago.
	short := g.genKey("Short <short@example.com>", "never", created)
	shortSig := g.sign(short, msg, now.Add(-6*24*time.Hour))
	shortOld := g.export(short)
	g.Must(fakedTime(now.Add(-5*24*time.Hour)), "--quick-set-expire", short, "1d")
	shortNew := g.export(short)

	// Extended: made to expire after 2 days (8 days ago), then (5 days
	// ago) set never to expire.
	long := g.genKey("Long <long@example.com>", "2d", created)
	longSig := g.sign(long, msg, now.Add(-9*24*time.Hour))
	longOld := g.export(long)
	g.Must(fakedTime(now.Add(-5*24*time.Hour)), "--quick-set-expire", long, "never")
	longNew := g.export(long)

	for _, tc := range []struct {
		name      string
		ring      []byte
		sig       []byte
		expired   bool
		gpgExpiry bool
	}{
		{"shortened, new appended", cat(shortOld, shortNew), shortSig, true, true},
		{"shortened, new first", cat(shortNew, shortOld), shortSig, true, true},
		{"extended, new appended", cat(longOld, longNew), longSig, false, false},
		{"extended, new first", cat(longNew, longOld), longSig, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out := listedBy(t, tc.ring); strings.Contains(out, "expired") != tc.gpgExpiry {
				t.Fatalf("gpg --list-keys (want expired: %v):\n%s", tc.gpgExpiry, out)
			}
			kr, err := ReadKeyring(tc.ring)
			if err != nil {
				t.Fatal(err)
			}
			_, err = mustPolicy(t, kr, 1).Verify(msg, [][]byte{tc.sig})
			if tc.expired != errors.Is(err, ErrExpiredKey) || (!tc.expired && err != nil) {
				t.Fatalf("expired: %v, err = %v", tc.expired, err)
			}
		})
	}
}

// twins makes two primary keys from one secret with gpg (the second from
// the first's keygrip, with another creation time, so another
// fingerprint), and returns their fingerprints.
func (g *gpgKeys) twins(now time.Time) (string, string) {
	g.t.Helper()
	a := g.genKey("Alice <alice@example.com>", "never", now.Add(-48*time.Hour))
	grips := strings.Fields(g.Must("--with-colons", "--with-keygrip", "--list-keys", a))
	var grip string
	for _, f := range grips {
		if strings.HasPrefix(f, "grp:") {
			grip = strings.Trim(f, "grp:")
			break
		}
	}
	if grip == "" {
		g.t.Fatal("gpg listed no keygrip")
	}
	params := "Key-Type: eddsa\nKey-Curve: ed25519\nKey-Grip: " + grip + "\nKey-Usage: sign\nName-Real: Alice Again\n" +
		"Name-Email: alice2@example.com\nCreation-Date: " + now.Add(-24*time.Hour).UTC().Format("20060102T150405") +
		"\nExpire-Date: 0\n%no-protection\n%commit\n"
	if out, err := g.RunStdin(params, "--gen-key"); err != nil {
		g.t.Fatalf("gpg --gen-key from a keygrip: %v\n%s", err, out)
	}
	b := g.Fingerprints("=Alice Again <alice2@example.com>")
	if len(b) != 1 || b[0] == a {
		g.t.Fatalf("second key %v", b)
	}
	// gpg agrees that they are one secret: one keygrip.
	if n := strings.Count(g.Must("--with-colons", "--with-keygrip", "--list-keys", b[0]), grip); n != 1 {
		g.t.Fatalf("the second key does not have the first's keygrip %s", grip)
	}
	return a, b[0]
}

// TestKeyringRefusesSharedKeyMaterial: a keyring holding two primary keys
// made from one secret (as a publisher could hand in to look like two
// signers) is refused, and the error names both fingerprints.
func TestKeyringRefusesSharedKeyMaterial(t *testing.T) {
	g := newGPGKeys(t)
	a, b := g.twins(time.Now())
	_, err := ReadKeyring(cat(g.export(a), g.export(b)))
	if !errors.Is(err, ErrSharedKeyMaterial) || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) {
		t.Fatalf("err = %v, want shared key material naming %s and %s", err, a, b)
	}
	want := "read keyring: two keys share one key material: keys " + a + " and " + b + " hold the same ed25519 key material"
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error\n%s\ndoes not start with\n%s", err, want)
	}
}

// TestSameKeyMaterialCountsOnce: the same twins, trusted one by one
// (NewKeyring does not refuse them), each sign: with a threshold of 2 the
// message is refused, and the error says why; a third key makes it pass.
func TestSameKeyMaterialCountsOnce(t *testing.T) {
	g := newGPGKeys(t)
	now := time.Now()
	a, b := g.twins(now)
	c := g.genKey("Carol <carol@example.com>", "never", now.Add(-48*time.Hour))
	keys := map[string]*Key{}
	for _, fpr := range []string{a, b, c} {
		kr, err := ReadKeyring(g.export(fpr))
		if err != nil {
			t.Fatal(err)
		}
		keys[fpr] = kr.Keys()[0]
	}
	sigA, sigB, sigC := g.sign(a, msg, now.Add(-time.Hour)), g.sign(b, msg, now.Add(-time.Hour)), g.sign(c, msg, now.Add(-time.Hour))
	p := mustPolicy(t, NewKeyring(keys[a], keys[b], keys[c]), 2)

	_, err := p.Verify(msg, [][]byte{sigA, sigB})
	if !errors.Is(err, ErrDuplicateSigner) || !errors.Is(err, ErrBelowThreshold) {
		t.Fatalf("two twins' signatures: err = %v", err)
	}
	want := "verification failed: 1 of 2 required signatures valid; signature 2 by " + b +
		" (Alice Again <alice2@example.com>): key already counted: its key material is that of " + a +
		", counted already (one secret under two fingerprints counts once)"
	if err.Error() != want {
		t.Fatalf("error\n got %s\nwant %s", err, want)
	}
	signers, err := p.Verify(msg, [][]byte{sigB, sigA, sigC})
	if err != nil || len(signers) != 2 || !containsAll(signers, b, c) {
		t.Fatalf("twins and a third key: signers %v, err %v", signers, err)
	}
}

// TestUnhashedIssuerCannotRedirect: anyone can rewrite a signature's
// unhashed subpackets. An issuer fingerprint added there names another
// trusted key; the signature still counts for the key its hashed
// subpackets name, and a copy redirected to a twin key counts once.
func TestUnhashedIssuerCannotRedirect(t *testing.T) {
	g := newGPGKeys(t)
	now := time.Now()
	a, twin := g.twins(now)
	bob := g.genKey("Bob <bob@example.com>", "never", now.Add(-48*time.Hour))
	keys := map[string]*Key{}
	for _, fpr := range []string{a, twin, bob} {
		kr, err := ReadKeyring(g.export(fpr))
		if err != nil {
			t.Fatal(err)
		}
		keys[fpr] = kr.Keys()[0]
	}
	sig := g.sign(a, msg, now.Add(-time.Hour))

	toBob := withUnhashedIssuer(t, sig, keys[bob])
	info, err := Describe(toBob)
	if err != nil || info.Issuer != a {
		t.Fatalf("Describe: issuer %s (%v), want %s", info.Issuer, err, a)
	}
	signers, err := mustPolicy(t, NewKeyring(keys[a], keys[bob]), 1).Verify(msg, [][]byte{toBob})
	if err != nil || len(signers) != 1 || signers[0] != a {
		t.Fatalf("signers %v, err %v; want %s", signers, err, a)
	}

	toTwin := withUnhashedIssuer(t, sig, keys[twin])
	_, err = mustPolicy(t, NewKeyring(keys[a], keys[twin], keys[bob]), 2).Verify(msg, [][]byte{sig, toTwin})
	if !errors.Is(err, ErrDuplicateSigner) || !strings.Contains(err.Error(), "signature 2 by "+a) {
		t.Fatalf("a signature and its copy redirected to a twin: err = %v", err)
	}
}

func mustPolicy(t *testing.T, kr *Keyring, threshold int) *Policy {
	t.Helper()
	p, err := NewPolicy(kr, threshold)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// withUnhashedIssuer rewrites a v4 signature packet so that its unhashed
// subpackets name k as issuer (issuer fingerprint and key id), as anyone
// holding the signature can.
func withUnhashedIssuer(t *testing.T, raw []byte, k *Key) []byte {
	t.Helper()
	body, err := packetBody(raw)
	if err != nil {
		t.Fatal(err)
	}
	if body[0] != 4 {
		t.Fatalf("not a v4 signature: version %d", body[0])
	}
	hashed := int(body[4])<<8 | int(body[5])
	at := 6 + hashed
	unhashed := int(body[at])<<8 | int(body[at+1])
	rest := body[at+2+unhashed:]
	pk := k.entity.PrimaryKey
	sub := append([]byte{22, subpacketIssuerFingerprint, 4}, pk.Fingerprint...)
	id := pk.KeyId
	sub = append(sub, 9, subpacketIssuer)
	for i := 7; i >= 0; i-- {
		sub = append(sub, byte(id>>(8*i)))
	}
	var nb []byte
	nb = append(nb, body[:at]...)
	nb = append(nb, byte(len(sub)>>8), byte(len(sub)))
	nb = append(nb, sub...)
	nb = append(nb, rest...)
	// A new-format signature packet (tag 2) with a one- or two-octet
	// length.
	var out []byte
	switch n := len(nb); {
	case n < 192:
		out = append([]byte{0xc2, byte(n)}, nb...)
	case n < 8384:
		n -= 192
		out = append([]byte{0xc2, byte(n>>8) + 192, byte(n)}, nb...)
	default:
		t.Fatalf("body of %d bytes", n)
	}
	if _, err := ParseSignature(out); err != nil {
		t.Fatalf("rewritten signature does not parse: %v", err)
	}
	return out
}
