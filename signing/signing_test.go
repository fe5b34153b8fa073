package signing

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/ed25519"
	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func clockAt(t time.Time) PolicyOption { return WithClock(func() time.Time { return t }) }

func newSigner(t testing.TB, uid string) *Signer {
	t.Helper()
	s, err := GenerateSigner(uid, t0.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSign(t testing.TB, s *Signer, msg []byte, at time.Time) []byte {
	t.Helper()
	sig, err := s.Sign(msg, at)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func policy(t testing.TB, threshold int, opts []PolicyOption, keys ...*Key) *Policy {
	t.Helper()
	p, err := NewPolicy(NewKeyring(keys...), threshold, append([]PolicyOption{clockAt(t0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var msg = []byte("{\"id\":\"fix\",\"version\":1}\n")

func TestVerifyAccepts(t *testing.T) {
	a, b := newSigner(t, "Alice <alice@example.com>"), newSigner(t, "Bob <bob@example.com>")
	p := policy(t, 2, nil, a.Public(), b.Public())
	signers, err := p.Verify(msg, [][]byte{mustSign(t, a, msg, t0), mustSign(t, b, msg, t0)})
	if err != nil {
		t.Fatal(err)
	}
	if len(signers) != 2 || !containsAll(signers, a.Public().Fingerprint(), b.Public().Fingerprint()) {
		t.Fatalf("signers = %v", signers)
	}
	// Within the allowed clock skew a signature from "the future" is fine.
	if _, err := policy(t, 1, nil, a.Public()).Verify(msg, [][]byte{mustSign(t, a, msg, t0.Add(time.Minute))}); err != nil {
		t.Fatalf("signature one minute ahead: %v", err)
	}
}

func TestVerifyIgnoresJunkWhenThresholdMet(t *testing.T) {
	a, stranger := newSigner(t, "Alice"), newSigner(t, "Mallory")
	p := policy(t, 1, nil, a.Public())
	signers, err := p.Verify(msg, [][]byte{mustSign(t, stranger, msg, t0), []byte("junk"), mustSign(t, a, msg, t0)})
	if err != nil || len(signers) != 1 || signers[0] != a.Public().Fingerprint() {
		t.Fatalf("signers %v, err %v", signers, err)
	}
}

// TestVerifyRefuses is one case per attack or illegal input; each asserts
// the exact reason.
func TestVerifyRefuses(t *testing.T) {
	alice, bob := newSigner(t, "Alice <alice@example.com>"), newSigner(t, "Bob <bob@example.com>")
	mallory := newSigner(t, "Mallory <m@example.com>")

	revoked := newSigner(t, "Revoked <r@example.com>")
	if err := revoked.entity.RevokeKey(packet.KeySuperseded, "rotated out", &packet.Config{Time: func() time.Time { return t0.Add(-time.Hour) }}); err != nil {
		t.Fatal(err)
	}

	withSub := newSigner(t, "Sub <sub@example.com>")
	if err := withSub.entity.AddSigningSubkey(&packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return t0.Add(-time.Hour) }}); err != nil {
		t.Fatal(err)
	}
	subSigner, err := signerFor(withSub.entity, t0)
	if err != nil {
		t.Fatal(err)
	}
	if subSigner.key.PublicKey == withSub.entity.PrimaryKey {
		t.Fatal("expected the signing subkey to be chosen")
	}
	subSig := mustSign(t, subSigner, msg, t0)
	subRevoked := newSigner(t, "SubRevoked")
	if err := subRevoked.entity.AddSigningSubkey(&packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return t0.Add(-time.Hour) }}); err != nil {
		t.Fatal(err)
	}
	subRevSigner, _ := signerFor(subRevoked.entity, t0)
	subRevSig := mustSign(t, subRevSigner, msg, t0)
	if err := subRevoked.entity.RevokeSubkey(&subRevoked.entity.Subkeys[len(subRevoked.entity.Subkeys)-1], packet.KeyCompromised, "lost", nil); err != nil {
		t.Fatal(err)
	}

	expiring, err := openpgp.NewEntity("Expiring", "", "e@example.com", &packet.Config{
		Algorithm: packet.PubKeyAlgoEdDSA, KeyLifetimeSecs: 3600, Time: func() time.Time { return t0.Add(-2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	expSigner := &Signer{entity: expiring}
	expSigner.key, _ = expiring.SigningKey(t0.Add(-2 * time.Hour))

	tampered := append([]byte(nil), msg...)
	tampered[2] ^= 1

	cases := []struct {
		name      string
		threshold int
		keys      []*Key
		message   []byte
		sigs      [][]byte
		want      []error
	}{
		{"no signatures", 1, []*Key{alice.Public()}, msg, nil, []error{ErrNoSignatures}},
		{"tampered message", 1, []*Key{alice.Public()}, tampered, [][]byte{mustSign(t, alice, msg, t0)}, []error{ErrBadSignature, ErrBelowThreshold}},
		{"untrusted key", 1, []*Key{alice.Public()}, msg, [][]byte{mustSign(t, mallory, msg, t0)}, []error{ErrUnknownSigner}},
		{"revoked key", 1, []*Key{revoked.Public()}, msg, [][]byte{mustSign(t, revoked, msg, t0.Add(-2*time.Hour))}, []error{ErrRevokedKey}},
		{"revoked subkey", 1, []*Key{subRevoked.Public()}, msg, [][]byte{subRevSig}, []error{ErrRevokedKey}},
		{"expired key", 1, []*Key{expSigner.Public()}, msg, [][]byte{mustSign(t, expSigner, msg, t0.Add(-90*time.Minute))}, []error{ErrExpiredKey}},
		{"expired signature", 1, []*Key{alice.Public()}, msg, [][]byte{signWith(t, alice, msg, &packet.Config{SigLifetimeSecs: 60, Time: func() time.Time { return t0.Add(-time.Hour) }})}, []error{ErrExpiredSignature}},
		{"signature from the future", 1, []*Key{alice.Public()}, msg, [][]byte{mustSign(t, alice, msg, t0.Add(time.Hour))}, []error{ErrFutureSignature}},
		{"weak hash", 1, []*Key{alice.Public()}, msg, [][]byte{signSHA1(t, alice, msg)}, []error{ErrWeakHash}},
		{"MD5", 1, []*Key{alice.Public()}, msg, [][]byte{withHashID(t, signSHA1(t, alice, msg), 1)}, []error{ErrWeakHash}},
		{"RIPEMD-160", 1, []*Key{alice.Public()}, msg, [][]byte{withHashID(t, signSHA1(t, alice, msg), 3)}, []error{ErrWeakHash}},
		{"unknown hash", 1, []*Key{alice.Public()}, msg, [][]byte{withHashID(t, signSHA1(t, alice, msg), 99)}, []error{ErrMalformedSignature}},
		{"below threshold", 2, []*Key{alice.Public(), bob.Public()}, msg, [][]byte{mustSign(t, alice, msg, t0)}, []error{ErrBelowThreshold}},
		{"same key twice", 2, []*Key{alice.Public(), bob.Public()}, msg, [][]byte{mustSign(t, alice, msg, t0), mustSign(t, alice, msg, t0.Add(-time.Second))}, []error{ErrDuplicateSigner, ErrBelowThreshold}},
		{"subkey and primary count once", 2, []*Key{withSub.Public(), bob.Public()}, msg, [][]byte{subSig, mustSign(t, &Signer{entity: withSub.entity, key: primaryKey(withSub.entity)}, msg, t0)}, []error{ErrDuplicateSigner}},
		{"garbage", 1, []*Key{alice.Public()}, msg, [][]byte{[]byte("not a signature at all")}, []error{ErrMalformedSignature}},
		{"truncated signature", 1, []*Key{alice.Public()}, msg, [][]byte{mustSign(t, alice, msg, t0)[:40]}, []error{ErrMalformedSignature}},
		{"trailing data", 1, []*Key{alice.Public()}, msg, [][]byte{append(mustSign(t, alice, msg, t0), 0xc2, 0x00)}, []error{ErrMalformedSignature}},
		{"key packet instead of signature", 1, []*Key{alice.Public()}, msg, [][]byte{serializedPublicKey(t, alice)}, []error{ErrMalformedSignature}},
		{"oversized signature", 1, []*Key{alice.Public()}, msg, [][]byte{make([]byte, MaxSignatureSize+1)}, []error{ErrMalformedSignature}},
		{"too many signatures", 1, []*Key{alice.Public()}, msg, repeat(mustSign(t, alice, msg, t0), MaxSignatures+1), []error{ErrMalformedSignature}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := policy(t, tc.threshold, nil, tc.keys...)
			signers, err := p.Verify(tc.message, tc.sigs)
			if err == nil {
				t.Fatalf("accepted, signers %v", signers)
			}
			if !IsVerificationError(err) {
				t.Fatalf("error %v (%T) is not a verification error", err, err)
			}
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Errorf("error %q does not wrap %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestVerifyMessageNamesSigner(t *testing.T) {
	alice, mallory := newSigner(t, "Alice <alice@example.com>"), newSigner(t, "Mallory")
	_, err := policy(t, 1, nil, alice.Public()).Verify(msg, [][]byte{mustSign(t, mallory, msg, t0)})
	want := "verification failed: 0 of 1 required signatures valid; signature 1 by " + mallory.Public().Fingerprint() + ": signer is not a trusted key"
	if err == nil || err.Error() != want {
		t.Fatalf("error\n got %v\nwant %s", err, want)
	}
}

func TestNewPolicyRefusesBadThreshold(t *testing.T) {
	a := newSigner(t, "A")
	for _, th := range []int{0, -1, 2} {
		if _, err := NewPolicy(NewKeyring(a.Public()), th); err == nil {
			t.Errorf("threshold %d accepted with one key", th)
		}
	}
	if _, err := NewPolicy(NewKeyring(), 1); err == nil {
		t.Error("empty keyring accepted")
	}
}

func TestKeyringRoundTripAndStrength(t *testing.T) {
	a, b := newSigner(t, "A <a@example.com>"), newSigner(t, "B <b@example.com>")
	pa, _ := a.Public().Armored()
	pb, _ := b.Public().Armored()
	kr, err := ReadKeyring(append(append(pa, '\n'), pb...))
	if err != nil {
		t.Fatal(err)
	}
	if kr.Len() != 2 {
		t.Fatalf("keyring has %d keys, want 2", kr.Len())
	}
	if k, ok := kr.Lookup(a.Public().Fingerprint()); !ok || k.Identity() != "A <a@example.com>" || k.Algorithm() != "ed25519" {
		t.Fatalf("lookup: %v %v", k, ok)
	}

	weak, err := openpgp.NewEntity("Weak", "", "", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 1024})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := weak.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyring(buf.Bytes()); err == nil || !strings.Contains(err.Error(), "too weak") {
		t.Fatalf("1024-bit RSA key: err = %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("garbage"), make([]byte, MaxKeyringSize+1)} {
		if _, err := ReadKeyring(bad); err == nil {
			t.Errorf("ReadKeyring(%d bytes) accepted", len(bad))
		}
	}
}

func TestRSA2048Verifies(t *testing.T) {
	e, err := openpgp.NewEntity("RSA", "", "rsa@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 2048, Time: func() time.Time { return t0.Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.SerializePrivate(&buf, nil); err != nil {
		t.Fatal(err)
	}
	s, err := ReadSigner(buf.Bytes(), nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy(t, 1, nil, s.Public()).Verify(msg, [][]byte{mustSign(t, s, msg, t0)}); err != nil {
		t.Fatal(err)
	}
	if got := s.Public().Algorithm(); got != "rsa2048" {
		t.Fatalf("algorithm %q", got)
	}
}

func TestSecretKeyPassphrase(t *testing.T) {
	s := newSigner(t, "Owner <o@example.com>")
	pass := []byte("correct horse")
	armored, err := s.ArmoredSecret(pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSigner(armored, nil, t0); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Fatalf("no passphrase: %v", err)
	}
	if _, err := ReadSigner(armored, []byte("wrong"), t0); err == nil {
		t.Fatal("wrong passphrase accepted")
	}
	back, err := ReadSigner(armored, pass, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy(t, 1, nil, s.Public()).Verify(msg, [][]byte{mustSign(t, back, msg, t0)}); err != nil {
		t.Fatal(err)
	}
	// The original is still usable, and an unprotected export reads back.
	plain, err := s.ArmoredSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSigner(plain, nil, t0); err != nil {
		t.Fatal(err)
	}
	pub, _ := s.Public().Armored()
	if _, err := ReadSigner(pub, nil, t0); err == nil {
		t.Fatal("public key accepted as secret key")
	}
}

func TestSplitSignatures(t *testing.T) {
	a, b := newSigner(t, "A"), newSigner(t, "B")
	sa, sb := mustSign(t, a, msg, t0), mustSign(t, b, msg, t0)
	armored, err := Armor(append(append([]byte(nil), sa...), sb...))
	if err != nil {
		t.Fatal(err)
	}
	got, err := SplitSignatures(armored)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], sa) || !bytes.Equal(got[1], sb) {
		t.Fatalf("split into %d parts", len(got))
	}
	for _, bad := range [][]byte{nil, []byte("-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n"), serializedPublicKey(t, a)} {
		if _, err := SplitSignatures(bad); !errors.Is(err, ErrMalformedSignature) {
			t.Errorf("SplitSignatures(%q) = %v", bad, err)
		}
	}
	info, err := Describe(sa)
	if err != nil {
		t.Fatal(err)
	}
	if info.Issuer != a.Public().Fingerprint() || info.Hash != "SHA-256" || info.Algorithm != "ed25519" || !info.Created.Equal(t0) {
		t.Fatalf("describe: %+v", info)
	}
}

func TestGenerateSignerRejectsBadUID(t *testing.T) {
	for _, uid := range []string{"", "  ", "A <b", "A (x) <a@b>"} {
		if _, err := GenerateSigner(uid, t0); err == nil {
			t.Errorf("uid %q accepted", uid)
		}
	}
}

func signWith(t testing.TB, s *Signer, message []byte, cfg *packet.Config) []byte {
	t.Helper()
	sig, err := s.sign(message, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func primaryKey(e *openpgp.Entity) openpgp.Key {
	ss, _ := e.PrimarySelfSignature()
	return openpgp.Key{Entity: e, PublicKey: e.PrimaryKey, PrivateKey: e.PrivateKey, SelfSignature: ss}
}

// signSHA1 makes a real SHA-1 signature, which the library refuses to make
// through its high-level API.
func signSHA1(t testing.TB, s *Signer, message []byte) []byte {
	t.Helper()
	pk := s.key.PublicKey
	sig := &packet.Signature{Version: 4, SigType: packet.SigTypeBinary, PubKeyAlgo: pk.PubKeyAlgo, Hash: crypto.SHA1,
		CreationTime: t0, IssuerKeyId: &pk.KeyId, IssuerFingerprint: pk.Fingerprint, IssuerKeyVersion: 4}
	h := sha1.New()
	h.Write(message)
	noSalt := false
	if err := sig.Sign(h, s.key.PrivateKey, &packet.Config{Time: func() time.Time { return t0 }, NonDeterministicSignaturesViaNotation: &noSalt}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := sig.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	// Prove it is a valid signature apart from its hash.
	h2 := sha1.New()
	h2.Write(message)
	if err := pk.VerifySignature(h2, sig); err != nil {
		t.Fatalf("crafted SHA-1 signature does not verify: %v", err)
	}
	return buf.Bytes()
}

// withHashID rewrites the hash algorithm of a serialized v4 signature
// packet, as a signer using that hash would have written it.
func withHashID(t testing.TB, raw []byte, id byte) []byte {
	t.Helper()
	out := append([]byte(nil), raw...)
	var body int
	switch {
	case out[0]&0x40 != 0 && out[1] < 192: // new format, one-octet length
		body = 2
	case out[0]&0x40 != 0 && out[1] < 224:
		body = 3
	case out[0]&0x40 != 0 && out[1] == 255:
		body = 6
	case out[0]&0x40 == 0: // old format
		body = 1 + []int{1, 2, 4}[out[0]&3]
	default:
		t.Fatalf("unexpected packet header % x", out[:2])
	}
	if out[body] != 4 {
		t.Fatalf("not a v4 signature: version %d", out[body])
	}
	out[body+3] = id
	return out
}

func serializedPublicKey(t testing.TB, s *Signer) []byte {
	var buf bytes.Buffer
	if err := s.entity.PrimaryKey.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func repeat(b []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func containsAll(list []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, l := range list {
			found = found || l == w
		}
		if !found {
			return false
		}
	}
	return true
}

// TestEd25519AsAlgorithms22And27IsOneMaterial: one Ed25519 secret written
// once as EdDSA (algorithm 22, what gpg 2.2 makes) and once as RFC 9580's
// Ed25519 (algorithm 27) is one key material: the keyring is refused, and
// trusted one by one the two count once.
func TestEd25519AsAlgorithms22And27IsOneMaterial(t *testing.T) {
	legacy := newSigner(t, "Legacy <l@example.com>")
	ek, ok := legacy.entity.PrivateKey.PrivateKey.(*eddsa.PrivateKey)
	if !ok {
		t.Fatalf("generated key is a %T, not EdDSA", legacy.entity.PrivateKey.PrivateKey)
	}
	native := &ed25519.PrivateKey{PublicKey: ed25519.PublicKey{Point: ek.X}, Key: append(append([]byte(nil), ek.D...), ek.X...)}
	created := t0.Add(-12 * time.Hour)
	priv := packet.NewSignerPrivateKey(created, native)
	e := &openpgp.Entity{PrimaryKey: &priv.PublicKey, PrivateKey: priv, Identities: map[string]*openpgp.Identity{}}
	if err := e.AddUserId("Native", "", "n@example.com", &packet.Config{Time: func() time.Time { return created }}); err != nil {
		t.Fatal(err)
	}
	if e.PrimaryKey.PubKeyAlgo != packet.PubKeyAlgoEd25519 || legacy.entity.PrimaryKey.PubKeyAlgo != packet.PubKeyAlgoEdDSA {
		t.Fatalf("algorithms %d and %d", legacy.entity.PrimaryKey.PubKeyAlgo, e.PrimaryKey.PubKeyAlgo)
	}
	twin, err := signerFor(e, t0)
	if err != nil {
		t.Fatal(err)
	}
	pl, _ := legacy.Public().Armored()
	pn, _ := twin.Public().Armored()
	if _, err := ReadKeyring(append(pl, pn...)); !errors.Is(err, ErrSharedKeyMaterial) ||
		!strings.Contains(err.Error(), legacy.Public().Fingerprint()) || !strings.Contains(err.Error(), twin.Public().Fingerprint()) {
		t.Fatalf("ReadKeyring: %v", err)
	}
	_, err = policy(t, 2, nil, legacy.Public(), twin.Public()).Verify(msg, [][]byte{mustSign(t, legacy, msg, t0), mustSign(t, twin, msg, t0)})
	if !errors.Is(err, ErrDuplicateSigner) || !errors.Is(err, ErrBelowThreshold) {
		t.Fatalf("Verify: %v", err)
	}
}
