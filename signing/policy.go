package signing

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// DefaultMaxClockSkew is how far in the future a signature's creation time
// may lie before it is refused: hosts' clocks disagree by seconds, not
// minutes, when they run NTP.
const DefaultMaxClockSkew = 5 * time.Minute

// MaxSignatures bounds how many signatures one message may carry.
const MaxSignatures = 32

// Policy decides whether signatures over a message satisfy the trust
// policy: Threshold distinct keys of Keyring.
type Policy struct {
	keyring      *Keyring
	threshold    int
	now          func() time.Time
	maxClockSkew time.Duration
}

// PolicyOption adjusts a Policy.
type PolicyOption func(*Policy)

// WithClock sets the clock the policy judges time by (expiry, signatures
// from the future). The default is time.Now.
func WithClock(now func() time.Time) PolicyOption { return func(p *Policy) { p.now = now } }

// WithMaxClockSkew sets how far in the future a signature may be dated.
func WithMaxClockSkew(d time.Duration) PolicyOption { return func(p *Policy) { p.maxClockSkew = d } }

// NewPolicy makes a policy requiring threshold distinct keys of kr.
func NewPolicy(kr *Keyring, threshold int, opts ...PolicyOption) (*Policy, error) {
	if kr == nil || kr.Len() == 0 {
		return nil, errors.New("trust policy: the keyring is empty")
	}
	if threshold < 1 {
		return nil, fmt.Errorf("trust policy: threshold %d must be at least 1", threshold)
	}
	if threshold > kr.Len() {
		return nil, fmt.Errorf("trust policy: threshold %d is more than the %d trusted key(s) in the keyring", threshold, kr.Len())
	}
	p := &Policy{keyring: kr, threshold: threshold, now: time.Now, maxClockSkew: DefaultMaxClockSkew}
	for _, o := range opts {
		o(p)
	}
	if p.maxClockSkew < 0 {
		return nil, errors.New("trust policy: negative clock skew")
	}
	return p, nil
}

// Threshold is the number of distinct keys the policy requires.
func (p *Policy) Threshold() int { return p.threshold }

// Keyring is the set of trusted keys.
func (p *Policy) Keyring() *Keyring { return p.keyring }

// Verify checks detached signatures over message and returns the
// fingerprints of the distinct trusted primary keys that signed it, sorted,
// when there are at least Threshold of them. Otherwise it returns a
// *VerificationError that says why each signature did not count.
func (p *Policy) Verify(message []byte, signatures [][]byte) ([]string, error) {
	now := p.now()
	return p.verify(message, signatures, now, now)
}

// VerifyAsOf judges signatures over a message that was verified and acted
// on at an earlier time, verifiedAt, as a host judges a stored bundle
// before loading it again at boot: the keyring and the threshold are
// today's, and so is revocation (a key revoked at any time up to now, or
// up to verifiedAt if the clock now reads earlier, does not count), but
// expiry (of signatures, keys and subkeys) and the allowance for
// signatures from the future are judged at verifiedAt. A signature that
// was valid when the message was acted on stays valid when only time has
// passed; a key that was revoked since does not.
func (p *Policy) VerifyAsOf(message []byte, signatures [][]byte, verifiedAt time.Time) ([]string, error) {
	revokedAt := p.now()
	if verifiedAt.After(revokedAt) {
		revokedAt = verifiedAt
	}
	return p.verify(message, signatures, verifiedAt, revokedAt)
}

// verify judges expiry and future dates at now and revocation at
// revokedAt.
func (p *Policy) verify(message []byte, signatures [][]byte, now, revokedAt time.Time) ([]string, error) {
	verr := &VerificationError{Required: p.threshold, Total: len(signatures)}
	if len(signatures) > MaxSignatures {
		verr.Rejections = append(verr.Rejections, Rejection{Index: MaxSignatures + 1,
			Err: fmt.Errorf("%w: %d signatures, at most %d allowed", ErrMalformedSignature, len(signatures), MaxSignatures)})
		return nil, verr
	}
	// claimed maps what a counted signature used up (its primary key's
	// fingerprint, its primary key's material and its signing key's
	// material) to the primary key it counted for: one secret under two
	// fingerprints counts once.
	claimed := map[string]string{}
	counted := map[string]bool{}
	for i, raw := range signatures {
		fpr, uses, issuer, err := p.check(message, raw, now, revokedAt)
		if err == nil {
			for _, u := range uses {
				if by, ok := claimed[u]; ok {
					if by == fpr {
						err = fmt.Errorf("%w: a second signature by one key counts once", ErrDuplicateSigner)
					} else {
						err = fmt.Errorf("%w: its key material is that of %s, counted already (one secret under two fingerprints counts once)", ErrDuplicateSigner, by)
					}
					break
				}
			}
		}
		if err != nil {
			verr.Rejections = append(verr.Rejections, Rejection{Index: i + 1, Issuer: issuer, Err: err})
			continue
		}
		counted[fpr] = true
		for _, u := range uses {
			claimed[u] = fpr
		}
	}
	verr.Valid = len(counted)
	if verr.Valid < p.threshold {
		return nil, verr
	}
	signers := make([]string, 0, len(counted))
	for fpr := range counted {
		signers = append(signers, fpr)
	}
	sort.Strings(signers)
	return signers, nil
}

// check runs the ordered checks of the package doc on one signature and
// returns the primary fingerprint it counts for, and what it uses up: that
// fingerprint and the key material of the primary and the signing key.
func (p *Policy) check(message, raw []byte, now, revokedAt time.Time) (fpr string, uses []string, issuer string, err error) {
	fpr, key, issuer, err := p.checkSig(message, raw, now, revokedAt)
	if err != nil {
		return "", nil, issuer, err
	}
	return fpr, []string{"fingerprint:" + fpr, keyMaterial(key.Entity.PrimaryKey), keyMaterial(key.PublicKey)}, issuer, nil
}

func (p *Policy) checkSig(message, raw []byte, now, revokedAt time.Time) (fpr string, _ *openpgp.Key, issuer string, err error) {
	sig, err := ParseSignature(raw)
	if err != nil {
		return "", nil, "", err
	}
	issuer = issuerOf(sig)
	if !strongHash(sig.Hash) {
		return "", nil, issuer, fmt.Errorf("%w: %s", ErrWeakHash, hashName(sig.Hash))
	}
	keys := p.candidates(sig)
	if len(keys) == 0 {
		return "", nil, issuer, ErrUnknownSigner
	}
	var key *openpgp.Key
	for i := range keys {
		h, err := sig.PrepareVerify()
		if err != nil {
			return "", nil, issuer, fmt.Errorf("%w: %v", ErrMalformedSignature, err)
		}
		h.Write(message)
		if keys[i].PublicKey.VerifySignature(h, sig) == nil {
			key = &keys[i]
			break
		}
	}
	if key == nil {
		return "", nil, issuer, ErrBadSignature
	}
	primary := key.Entity.PrimaryKey
	issuer = fingerprint(primary)
	if id := key.Entity.PrimaryIdentity(); id != nil {
		issuer += " (" + id.Name + ")"
	}
	if sig.CreationTime.After(now.Add(p.maxClockSkew)) {
		return "", nil, issuer, fmt.Errorf("%w: dated %s, now is %s", ErrFutureSignature,
			sig.CreationTime.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if sig.CreationTime.Before(key.PublicKey.CreationTime) {
		return "", nil, issuer, fmt.Errorf("%w: signature predates its key", ErrBadSignature)
	}
	if sigExpired(sig, now) {
		return "", nil, issuer, fmt.Errorf("%w: at %s", ErrExpiredSignature, expiry(sig).UTC().Format(time.RFC3339))
	}
	selfSig, identity := key.Entity.PrimarySelfSignature()
	bySubkey := key.PublicKey != primary
	if key.Entity.Revoked(revokedAt) || (bySubkey && key.Revoked(revokedAt)) || (identity != nil && identity.Revoked(revokedAt)) {
		return "", nil, issuer, ErrRevokedKey
	}
	if selfSig == nil || keyExpired(primary, selfSig, now) || sigExpired(selfSig, now) {
		return "", nil, issuer, ErrExpiredKey
	}
	if bySubkey && (key.SelfSignature == nil || keyExpired(key.PublicKey, key.SelfSignature, now) || sigExpired(key.SelfSignature, now)) {
		return "", nil, issuer, fmt.Errorf("%w: signing subkey %s", ErrExpiredKey, fingerprint(key.PublicKey))
	}
	return fingerprint(primary), key, issuer, nil
}

// candidates finds the trusted signing keys a signature names.
func (p *Policy) candidates(sig *packet.Signature) []openpgp.Key {
	var id uint64
	switch {
	case sig.IssuerKeyId != nil:
		id = *sig.IssuerKeyId
	case len(sig.IssuerFingerprint) >= 8:
		fp := sig.IssuerFingerprint
		// v4 key ids are the low 64 bits of the fingerprint, v6 the high.
		if sig.IssuerKeyVersion == 6 {
			fp = fp[:8]
		} else {
			fp = fp[len(fp)-8:]
		}
		for _, b := range fp {
			id = id<<8 | uint64(b)
		}
	default:
		return nil
	}
	keys := p.keyring.entities.KeysByIdUsage(id, packet.KeyFlagSign)
	if len(sig.IssuerFingerprint) == 0 {
		return keys
	}
	var match []openpgp.Key
	for _, k := range keys {
		if bytes.Equal(k.PublicKey.Fingerprint, sig.IssuerFingerprint) {
			match = append(match, k)
		}
	}
	return match
}

// SignatureInfo describes a signature without judging it.
type SignatureInfo struct {
	Issuer    string    `json:"issuer"` // fingerprint, or key id when only that is given
	Algorithm string    `json:"algorithm"`
	Hash      string    `json:"hash"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires,omitzero"`
}

// Describe reads a signature's metadata.
func Describe(raw []byte) (SignatureInfo, error) {
	sig, err := ParseSignature(raw)
	if err != nil {
		return SignatureInfo{}, err
	}
	info := SignatureInfo{
		Issuer:    issuerOf(sig),
		Algorithm: algorithmFor(sig.PubKeyAlgo),
		Hash:      hashName(sig.Hash),
		Created:   sig.CreationTime.UTC(),
	}
	if e := expiry(sig); !e.IsZero() {
		info.Expires = e.UTC()
	}
	return info, nil
}

// brokenHashes are the hash algorithms (RFC 9580, 9.5) that go-crypto
// does not parse at all, by the error it gives.
var brokenHashes = map[string]string{
	"hash function 1": "MD5",
	"hash function 3": "RIPEMD-160",
}

// ParseSignature parses exactly one binary-document signature packet in
// binary form, refusing anything else (trailing data included). Its issuer
// is the one its hashed subpackets name, when they name one: an issuer in
// the unhashed area, which anyone can change, does not override it.
func ParseSignature(raw []byte) (*packet.Signature, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformedSignature)
	}
	if len(raw) > MaxSignatureSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrMalformedSignature, len(raw), MaxSignatureSize)
	}
	r := bytes.NewReader(raw)
	p, err := packet.Read(r)
	if err != nil {
		// go-crypto does not parse the hashes it does not implement;
		// those that are broken are refused as weak, not as malformed.
		var ue pgperrors.UnsupportedError
		if errors.As(err, &ue) {
			if name, ok := brokenHashes[string(ue)]; ok {
				return nil, fmt.Errorf("%w: %s", ErrWeakHash, name)
			}
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformedSignature, err)
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		return nil, fmt.Errorf("%w: packet is a %T, not a signature", ErrMalformedSignature, p)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the signature packet", ErrMalformedSignature, r.Len())
	}
	if sig.SigType != packet.SigTypeBinary {
		return nil, fmt.Errorf("%w: type 0x%02x is not a signature over a binary document", ErrMalformedSignature, uint8(sig.SigType))
	}
	if err := useHashedIssuer(sig, raw); err != nil {
		return nil, err
	}
	return sig, nil
}

// Subpacket types that name a signature's issuer (RFC 9580, 5.2.3.12 and
// 5.2.3.35).
const (
	subpacketIssuer            = 16
	subpacketIssuerFingerprint = 33
)

// useHashedIssuer makes the signature name the issuer its hashed
// subpackets name. go-crypto reads the unhashed area after the hashed one
// and lets an issuer or issuer-fingerprint subpacket there, which anyone
// can add or change without breaking the signature, override the signed
// one. Here the unhashed area may only fill in what the hashed area does
// not say: with a hashed fingerprint it is ignored; with only a hashed key
// id, an unhashed fingerprint counts only when it has that key id.
func useHashedIssuer(sig *packet.Signature, raw []byte) error {
	keyID, fpVersion, fp, err := hashedIssuer(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformedSignature, err)
	}
	switch {
	case fp != nil:
		id := keyIDOfFingerprint(fpVersion, fp)
		if keyID != nil && *keyID != id {
			return fmt.Errorf("%w: its signed issuer key id %016X and fingerprint %X disagree", ErrMalformedSignature, *keyID, fp)
		}
		sig.IssuerKeyVersion, sig.IssuerFingerprint, sig.IssuerKeyId = fpVersion, fp, &id
	case keyID != nil:
		sig.IssuerKeyId = keyID
		if len(sig.IssuerFingerprint) > 0 && keyIDOfFingerprint(sig.IssuerKeyVersion, sig.IssuerFingerprint) != *keyID {
			sig.IssuerKeyVersion, sig.IssuerFingerprint = 0, nil
		}
	}
	return nil
}

// keyIDOfFingerprint is the key id a fingerprint implies: the low 64 bits
// of a v4 fingerprint, the high 64 bits of a v5 or v6 one.
func keyIDOfFingerprint(version uint8, fp []byte) uint64 {
	if len(fp) < 8 {
		return 0
	}
	b := fp[len(fp)-8:]
	if version >= 5 {
		b = fp[:8]
	}
	var id uint64
	for _, x := range b {
		id = id<<8 | uint64(x)
	}
	return id
}

// hashedIssuer reads the issuer and issuer-fingerprint subpackets of the
// hashed area of one signature packet (already parsed by go-crypto, so its
// structure is known to be sound; this only finds where the area is).
func hashedIssuer(raw []byte) (keyID *uint64, fpVersion uint8, fp []byte, err error) {
	body, err := packetBody(raw)
	if err != nil {
		return nil, 0, nil, err
	}
	if len(body) < 1 {
		return nil, 0, nil, errors.New("empty signature packet")
	}
	var area []byte
	switch body[0] {
	case 4, 5:
		if len(body) < 6 {
			return nil, 0, nil, errors.New("truncated signature packet")
		}
		n := int(body[4])<<8 | int(body[5])
		if len(body) < 6+n {
			return nil, 0, nil, errors.New("truncated hashed subpackets")
		}
		area = body[6 : 6+n]
	case 6:
		if len(body) < 8 {
			return nil, 0, nil, errors.New("truncated signature packet")
		}
		n := int(body[4])<<24 | int(body[5])<<16 | int(body[6])<<8 | int(body[7])
		if n < 0 || len(body)-8 < n {
			return nil, 0, nil, errors.New("truncated hashed subpackets")
		}
		area = body[8 : 8+n]
	default:
		return nil, 0, nil, nil // v3 signatures have no subpackets
	}
	for len(area) > 0 {
		var n int
		switch {
		case area[0] < 192:
			n, area = int(area[0]), area[1:]
		case area[0] < 255:
			if len(area) < 2 {
				return nil, 0, nil, errors.New("truncated subpacket length")
			}
			n, area = (int(area[0])-192)<<8+int(area[1])+192, area[2:]
		default:
			if len(area) < 5 {
				return nil, 0, nil, errors.New("truncated subpacket length")
			}
			n, area = int(area[1])<<24|int(area[2])<<16|int(area[3])<<8|int(area[4]), area[5:]
		}
		if n < 1 || n > len(area) {
			return nil, 0, nil, errors.New("bad subpacket length")
		}
		sub := area[:n]
		area = area[n:]
		switch sub[0] & 0x7f {
		case subpacketIssuer:
			if len(sub) == 9 {
				var id uint64
				for _, x := range sub[1:] {
					id = id<<8 | uint64(x)
				}
				keyID = &id
			}
		case subpacketIssuerFingerprint:
			if len(sub) >= 2 {
				fpVersion, fp = sub[1], append([]byte(nil), sub[2:]...)
			}
		}
	}
	return keyID, fpVersion, fp, nil
}

// packetBody returns the body of the one packet raw holds.
func packetBody(raw []byte) ([]byte, error) {
	if len(raw) < 2 || raw[0]&0x80 == 0 {
		return nil, errors.New("not an OpenPGP packet")
	}
	header := 0
	if raw[0]&0x40 != 0 { // new format
		switch l := raw[1]; {
		case l < 192:
			header = 2
		case l < 224:
			header = 3
		case l == 255:
			header = 6
		default:
			return nil, errors.New("a signature packet with a partial body length")
		}
	} else { // old format
		header = []int{2, 3, 5, 1}[raw[0]&3] // the last: indeterminate length, the rest
	}
	if len(raw) < header {
		return nil, errors.New("truncated packet header")
	}
	return raw[header:], nil
}

// SplitSignatures takes detached signatures as gpg writes them (armored or
// binary; one packet per signer, possibly several in one file) and returns
// each signature packet on its own, in binary form, checked with
// ParseSignature.
func SplitSignatures(data []byte) ([][]byte, error) {
	if len(data) > MaxSignatures*MaxSignatureSize*2 {
		return nil, fmt.Errorf("%w: %d bytes is too large for a signature file", ErrMalformedSignature, len(data))
	}
	body := io.Reader(bytes.NewReader(data))
	if blocks := armoredBlocks(data); blocks != nil {
		if len(blocks) != 1 {
			return nil, fmt.Errorf("%w: %d armored blocks; give one signature file at a time", ErrMalformedSignature, len(blocks))
		}
		block, err := armor.Decode(bytes.NewReader(blocks[0]))
		if err != nil {
			return nil, fmt.Errorf("%w: armor: %v", ErrMalformedSignature, err)
		}
		if block.Type != openpgp.SignatureType {
			return nil, fmt.Errorf("%w: armor block %q is not a signature", ErrMalformedSignature, block.Type)
		}
		body = block.Body
	}
	raw, err := io.ReadAll(io.LimitReader(body, MaxSignatures*MaxSignatureSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedSignature, err)
	}
	var out [][]byte
	r := bytes.NewReader(raw)
	for r.Len() > 0 {
		start := len(raw) - r.Len()
		if _, err := packet.Read(r); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedSignature, err)
		}
		one := raw[start : len(raw)-r.Len()]
		if _, err := ParseSignature(one); err != nil {
			return nil, err
		}
		out = append(out, append([]byte(nil), one...))
		if len(out) > MaxSignatures {
			return nil, fmt.Errorf("%w: more than %d signatures", ErrMalformedSignature, MaxSignatures)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no signature packets", ErrMalformedSignature)
	}
	return out, nil
}

// Armor wraps a binary signature as gpg --armor would write it.
func Armor(sig []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.SignatureType, nil)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(sig); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func issuerOf(sig *packet.Signature) string {
	if len(sig.IssuerFingerprint) > 0 {
		return strings.ToUpper(fmt.Sprintf("%x", sig.IssuerFingerprint))
	}
	if sig.IssuerKeyId != nil {
		return fmt.Sprintf("%016X", *sig.IssuerKeyId)
	}
	return ""
}

func expiry(sig *packet.Signature) time.Time {
	if sig.SigLifetimeSecs == nil || *sig.SigLifetimeSecs == 0 {
		return time.Time{}
	}
	return sig.CreationTime.Add(time.Duration(*sig.SigLifetimeSecs) * time.Second)
}

// sigExpired and keyExpired judge lifetimes only. The library's versions
// also call anything created after now expired, which would turn clock skew
// into a misleading "expired"; creation times are checked against the skew
// allowance separately.
func sigExpired(sig *packet.Signature, now time.Time) bool {
	e := expiry(sig)
	return !e.IsZero() && now.After(e)
}

func keyExpired(pk *packet.PublicKey, selfSig *packet.Signature, now time.Time) bool {
	if selfSig.KeyLifetimeSecs == nil || *selfSig.KeyLifetimeSecs == 0 {
		return false
	}
	return now.After(pk.CreationTime.Add(time.Duration(*selfSig.KeyLifetimeSecs) * time.Second))
}

func strongHash(h crypto.Hash) bool {
	switch h {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512, crypto.SHA3_256, crypto.SHA3_512:
		return true
	}
	return false
}

func hashName(h crypto.Hash) string {
	switch h {
	case crypto.MD5:
		return "MD5"
	case crypto.SHA1:
		return "SHA-1"
	case crypto.RIPEMD160:
		return "RIPEMD-160"
	case crypto.SHA224:
		return "SHA-224"
	}
	if h.Available() {
		return h.String()
	}
	return fmt.Sprintf("hash-%d", h)
}

func algorithmFor(a packet.PublicKeyAlgorithm) string {
	switch a {
	case packet.PubKeyAlgoEdDSA, packet.PubKeyAlgoEd25519:
		return "ed25519"
	case packet.PubKeyAlgoEd448:
		return "ed448"
	case packet.PubKeyAlgoECDSA:
		return "ecdsa"
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSASignOnly:
		return "rsa"
	case packet.PubKeyAlgoDSA:
		return "dsa"
	}
	return fmt.Sprintf("algorithm-%d", a)
}
