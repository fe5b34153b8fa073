package signing

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/ed25519"
	"github.com/ProtonMail/go-crypto/openpgp/ed448"
	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Size limits for what this package reads. Callers apply them when reading
// files too, so nothing unbounded reaches a parser.
const (
	MaxKeyringSize   = 1 << 20 // a keyring of a few hundred keys
	MaxSecretKeySize = 64 << 10
	MaxSignatureSize = 8 << 10 // an RSA-4096 signature is about 0.6 KiB
	MinRSABits       = 2048
)

// Key is a trusted public key (an OpenPGP certificate with its subkeys).
type Key struct {
	entity *openpgp.Entity
}

// Fingerprint is the primary key's fingerprint in upper-case hex.
func (k *Key) Fingerprint() string { return fingerprint(k.entity.PrimaryKey) }

// KeyID is the primary key's 64-bit id in upper-case hex.
func (k *Key) KeyID() string { return strings.ToUpper(k.entity.PrimaryKey.KeyIdString()) }

// Identity is the primary user id, such as "Release Team <rel@example.com>".
func (k *Key) Identity() string {
	if id := k.entity.PrimaryIdentity(); id != nil {
		return id.Name
	}
	return ""
}

// Algorithm names the primary key's algorithm, such as "ed25519" or "rsa4096".
func (k *Key) Algorithm() string { return algorithmName(k.entity.PrimaryKey) }

// String is "FINGERPRINT (identity)".
func (k *Key) String() string {
	if id := k.Identity(); id != "" {
		return k.Fingerprint() + " (" + id + ")"
	}
	return k.Fingerprint()
}

// Armored returns the public key, armored as gpg --export --armor would.
func (k *Key) Armored() ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := k.entity.Serialize(w); err != nil {
		return nil, fmt.Errorf("serialize public key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	buf.WriteByte('\n') // so that `cat a.asc b.asc` makes a valid keyring
	return buf.Bytes(), nil
}

// Keyring is a set of trusted public keys.
type Keyring struct {
	entities openpgp.EntityList
}

// ReadKeyring parses an armored or binary OpenPGP keyring (one or more
// concatenated armored blocks are fine). It refuses weak keys rather than
// skipping them, so a typo in a keyring file is noticed.
//
// Several copies of one key (an old export followed by a re-export after
// a revocation, an expiry change or a new subkey) are merged as gpg merges
// them on import: the union of their revocations, identities, subkeys and
// signatures, so any revocation wins and the newest self-signature decides
// expiry, whatever the order of the copies. Two different keys that share
// public key material (one secret under two fingerprints, as a new
// creation time makes) are refused with [ErrSharedKeyMaterial]: they would
// otherwise look like two signers.
func ReadKeyring(data []byte) (*Keyring, error) {
	if len(data) > MaxKeyringSize {
		return nil, fmt.Errorf("read keyring: %d bytes exceeds the %d byte limit", len(data), MaxKeyringSize)
	}
	entities, err := readEntities(data)
	if err != nil {
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	if len(entities) == 0 {
		return nil, errors.New("read keyring: no keys found")
	}
	byFpr := map[string]*openpgp.Entity{}
	kr := &Keyring{}
	for _, e := range entities {
		if err := checkStrength(e); err != nil {
			return nil, fmt.Errorf("read keyring: %w", err)
		}
		// Trust only public material, even when handed a secret key file.
		e.PrivateKey = nil
		for i := range e.Subkeys {
			e.Subkeys[i].PrivateKey = nil
		}
		fpr := fingerprint(e.PrimaryKey)
		if have, ok := byFpr[fpr]; ok {
			mergeEntity(have, e)
			continue
		}
		byFpr[fpr] = e
		kr.entities = append(kr.entities, e)
	}
	if err := checkSharedMaterial(kr.entities); err != nil {
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	return kr, nil
}

// mergeEntity folds src, another copy of dst's primary key, into dst. Every
// signature in either copy was checked against the primary key when it was
// read, so a union cannot add anything the key's owner did not sign.
func mergeEntity(dst, src *openpgp.Entity) {
	dst.Revocations = appendNewSigs(dst.Revocations, src.Revocations)
	dst.Signatures = appendNewSigs(dst.Signatures, src.Signatures)
	if newerSig(src.SelfSignature, dst.SelfSignature) {
		dst.SelfSignature = src.SelfSignature // v6: the direct-key signature
	}
	for name, id := range src.Identities {
		have, ok := dst.Identities[name]
		if !ok {
			dst.Identities[name] = id
			continue
		}
		have.Revocations = appendNewSigs(have.Revocations, id.Revocations)
		have.Signatures = appendNewSigs(have.Signatures, id.Signatures)
		if newerSig(id.SelfSignature, have.SelfSignature) {
			have.SelfSignature = id.SelfSignature
		}
	}
	for _, sk := range src.Subkeys {
		i := slices.IndexFunc(dst.Subkeys, func(d openpgp.Subkey) bool {
			return bytes.Equal(d.PublicKey.Fingerprint, sk.PublicKey.Fingerprint)
		})
		if i < 0 {
			dst.Subkeys = append(dst.Subkeys, sk)
			continue
		}
		have := &dst.Subkeys[i]
		have.Revocations = appendNewSigs(have.Revocations, sk.Revocations)
		if newerSig(sk.Sig, have.Sig) {
			have.Sig = sk.Sig
		}
	}
}

// newerSig reports whether a was made after b (or b is missing).
func newerSig(a, b *packet.Signature) bool {
	return a != nil && (b == nil || a.CreationTime.After(b.CreationTime))
}

// appendNewSigs adds the signatures of more that list does not hold yet,
// comparing their encodings: the same revocation in two copies is one.
func appendNewSigs(list, more []*packet.Signature) []*packet.Signature {
	encode := func(s *packet.Signature) string {
		var buf bytes.Buffer
		if err := s.Serialize(&buf); err != nil {
			return fmt.Sprintf("%p", s) // cannot be compared: keep it
		}
		return buf.String()
	}
	have := map[string]bool{}
	for _, s := range list {
		have[encode(s)] = true
	}
	for _, s := range more {
		if k := encode(s); !have[k] {
			have[k] = true
			list = append(list, s)
		}
	}
	return list
}

// checkSharedMaterial refuses two different keys (primary keys or
// subkeys of different primary keys) with the same public key material.
func checkSharedMaterial(entities []*openpgp.Entity) error {
	owner := map[string]*openpgp.Entity{}
	for _, e := range entities {
		keys := []*packet.PublicKey{e.PrimaryKey}
		for _, sk := range e.Subkeys {
			keys = append(keys, sk.PublicKey)
		}
		for _, pk := range keys {
			m := keyMaterial(pk)
			other, ok := owner[m]
			if !ok {
				owner[m] = e
				continue
			}
			if other != e {
				a, b := fingerprint(other.PrimaryKey), fingerprint(e.PrimaryKey)
				return fmt.Errorf("%w: keys %s and %s hold the same %s key material; they are one secret under two fingerprints and would count as two signers. Keep one of them",
					ErrSharedKeyMaterial, a, b, algorithmName(pk))
			}
		}
	}
	return nil
}

// keyMaterial names a key's public material independently of its creation
// time and packet version, which change its fingerprint but not its
// secret. Ed25519 is one material whether written as EdDSA (algorithm 22)
// or as RFC 9580's Ed25519 (27), and an RSA modulus is one material
// whatever its exponent or algorithm number.
func keyMaterial(pk *packet.PublicKey) string {
	switch k := pk.PublicKey.(type) {
	case *rsa.PublicKey:
		return "rsa:" + k.N.Text(16)
	case *eddsa.PublicKey:
		return k.GetCurve().GetCurveName() + ":" + hex.EncodeToString(k.X)
	case *ed25519.PublicKey:
		return "ed25519:" + hex.EncodeToString(k.Point)
	case *ed448.PublicKey:
		return "ed448:" + hex.EncodeToString(k.Point)
	}
	// Anything else: the key packet without its version and creation time.
	var buf bytes.Buffer
	if err := pk.SerializeForHash(&buf); err != nil || buf.Len() < 9 {
		return "fingerprint:" + fingerprint(pk) // cannot happen for a parsed key
	}
	body := buf.Bytes()[3:] // 0x99 and a two-octet length (v4)
	if pk.Version >= 5 {
		body = buf.Bytes()[5:] // 0x9a/0x9b and a four-octet length
	}
	return fmt.Sprintf("algorithm-%d:%x", pk.PubKeyAlgo, body[5:])
}

// NewKeyring makes a keyring from keys already parsed.
func NewKeyring(keys ...*Key) *Keyring {
	kr := &Keyring{}
	for _, k := range keys {
		kr.entities = append(kr.entities, k.entity)
	}
	return kr
}

// Keys lists the keyring's keys in fingerprint order.
func (kr *Keyring) Keys() []*Key {
	keys := make([]*Key, 0, len(kr.entities))
	for _, e := range kr.entities {
		keys = append(keys, &Key{entity: e})
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Fingerprint() < keys[j].Fingerprint() })
	return keys
}

// Len is the number of distinct primary keys.
func (kr *Keyring) Len() int { return len(kr.entities) }

// Lookup finds a key by fingerprint.
func (kr *Keyring) Lookup(fpr string) (*Key, bool) {
	for _, e := range kr.entities {
		if fingerprint(e.PrimaryKey) == strings.ToUpper(fpr) {
			return &Key{entity: e}, true
		}
	}
	return nil, false
}

// Signer is a secret key that signs manifests.
type Signer struct {
	entity *openpgp.Entity
	key    openpgp.Key
}

// GenerateSigner makes a new Ed25519 signing key (v4, EdDSA algorithm 22,
// which GnuPG 2.2 reads) for the user id "Name <email>" or "Name". The key
// is created at now and does not expire.
func GenerateSigner(uid string, now time.Time) (*Signer, error) {
	name, email, err := splitUID(uid)
	if err != nil {
		return nil, err
	}
	cfg := &packet.Config{
		Algorithm:   packet.PubKeyAlgoEdDSA,
		DefaultHash: crypto.SHA256,
		Time:        func() time.Time { return now },
	}
	e, err := openpgp.NewEntity(name, "", email, cfg)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return signerFor(e, now)
}

// ReadSigner parses an armored or binary secret key, decrypting it with
// passphrase when it is protected. now selects the signing key (the newest
// valid signing subkey, else the primary key).
func ReadSigner(data, passphrase []byte, now time.Time) (*Signer, error) {
	if len(data) > MaxSecretKeySize {
		return nil, fmt.Errorf("read secret key: %d bytes exceeds the %d byte limit", len(data), MaxSecretKeySize)
	}
	entities, err := readEntities(data)
	if err != nil {
		return nil, fmt.Errorf("read secret key: %w", err)
	}
	if len(entities) != 1 {
		return nil, fmt.Errorf("read secret key: want exactly one key, found %d", len(entities))
	}
	e := entities[0]
	if e.PrivateKey == nil {
		return nil, errors.New("read secret key: this is a public key, not a secret key")
	}
	if err := checkStrength(e); err != nil {
		return nil, fmt.Errorf("read secret key: %w", err)
	}
	encrypted := e.PrivateKey.Encrypted
	for _, sk := range e.Subkeys {
		encrypted = encrypted || (sk.PrivateKey != nil && sk.PrivateKey.Encrypted)
	}
	if encrypted {
		if len(passphrase) == 0 {
			return nil, errors.New("read secret key: the key is protected by a passphrase and none was given")
		}
		if err := e.DecryptPrivateKeys(passphrase); err != nil {
			return nil, fmt.Errorf("read secret key: wrong passphrase or damaged key: %w", err)
		}
	}
	return signerFor(e, now)
}

func signerFor(e *openpgp.Entity, now time.Time) (*Signer, error) {
	k, ok := e.SigningKey(now)
	if !ok {
		return nil, fmt.Errorf("key %s has no valid signing key at %s (expired or revoked?)",
			fingerprint(e.PrimaryKey), now.UTC().Format(time.RFC3339))
	}
	if k.PrivateKey == nil || k.PrivateKey.Dummy() {
		return nil, fmt.Errorf("key %s: the secret part of its signing key is missing", fingerprint(e.PrimaryKey))
	}
	return &Signer{entity: e, key: k}, nil
}

// Public returns the signer's public key.
func (s *Signer) Public() *Key { return &Key{entity: s.entity} }

// Sign makes a binary detached signature over message, dated now, with
// SHA-256.
func (s *Signer) Sign(message []byte, now time.Time) ([]byte, error) {
	return s.sign(message, &packet.Config{
		DefaultHash: crypto.SHA256,
		Time:        func() time.Time { return now },
	})
}

func (s *Signer) sign(message []byte, cfg *packet.Config) ([]byte, error) {
	cfg.SigningKeyId = s.key.PublicKey.KeyId
	var buf bytes.Buffer
	if err := openpgp.DetachSign(&buf, s.entity, bytes.NewReader(message), cfg); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return buf.Bytes(), nil
}

// ArmoredSecret serializes the secret key, protected by passphrase when it
// is not empty.
func (s *Signer) ArmoredSecret(passphrase []byte) ([]byte, error) {
	e := s.entity
	if len(passphrase) > 0 {
		// Encrypt a copy so the signer stays usable.
		var raw bytes.Buffer
		if err := e.SerializePrivateWithoutSigning(&raw, nil); err != nil {
			return nil, fmt.Errorf("serialize secret key: %w", err)
		}
		c, err := openpgp.ReadEntity(packet.NewReader(&raw))
		if err != nil {
			return nil, fmt.Errorf("copy secret key: %w", err)
		}
		if err := c.EncryptPrivateKeys(passphrase, nil); err != nil {
			return nil, fmt.Errorf("protect secret key: %w", err)
		}
		e = c
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := e.SerializePrivateWithoutSigning(w, nil); err != nil {
		return nil, fmt.Errorf("serialize secret key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	buf.WriteByte('\n') // so that `cat a.asc b.asc` makes a valid keyring
	return buf.Bytes(), nil
}

// readEntities reads armored (one or more blocks, as `cat a.asc b.asc`
// makes) or binary keys.
func readEntities(data []byte) (openpgp.EntityList, error) {
	blocks := armoredBlocks(data)
	if blocks == nil {
		return openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	var all openpgp.EntityList
	for _, raw := range blocks {
		block, err := armor.Decode(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("armor: %w", err)
		}
		if block.Type != openpgp.PublicKeyType && block.Type != openpgp.PrivateKeyType {
			return nil, fmt.Errorf("armor block %q is not a key", block.Type)
		}
		el, err := openpgp.ReadKeyRing(block.Body)
		if err != nil {
			return nil, err
		}
		all = append(all, el...)
	}
	return all, nil
}

// armoredBlocks splits text into its armored blocks, or returns nil when
// it holds none (binary input).
func armoredBlocks(data []byte) [][]byte {
	const begin = "-----BEGIN PGP "
	var blocks [][]byte
	for {
		i := bytes.Index(data, []byte(begin))
		if i < 0 {
			return blocks
		}
		data = data[i:]
		next := bytes.Index(data[len(begin):], []byte(begin))
		if next < 0 {
			return append(blocks, data)
		}
		blocks = append(blocks, data[:len(begin)+next])
		data = data[len(begin)+next:]
	}
}

// checkStrength refuses key algorithms and sizes too weak to trust.
func checkStrength(e *openpgp.Entity) error {
	check := func(pk *packet.PublicKey) error {
		switch pk.PubKeyAlgo {
		case packet.PubKeyAlgoEdDSA, packet.PubKeyAlgoEd25519, packet.PubKeyAlgoEd448,
			packet.PubKeyAlgoECDSA, packet.PubKeyAlgoECDH, packet.PubKeyAlgoX25519, packet.PubKeyAlgoX448:
			return nil
		case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSASignOnly, packet.PubKeyAlgoRSAEncryptOnly:
			bits, err := pk.BitLength()
			if err != nil {
				return err
			}
			if bits < MinRSABits {
				return fmt.Errorf("key %s: RSA key of %d bits is too weak (need at least %d)", fingerprint(pk), bits, MinRSABits)
			}
			return nil
		case packet.PubKeyAlgoElGamal:
			if pk.IsSubkey {
				return nil // an encryption subkey never signs
			}
		}
		return fmt.Errorf("key %s: algorithm %d is not accepted for signing", fingerprint(pk), pk.PubKeyAlgo)
	}
	if err := check(e.PrimaryKey); err != nil {
		return err
	}
	for _, sk := range e.Subkeys {
		if sk.Sig != nil && sk.Sig.FlagsValid && !sk.Sig.FlagSign {
			continue // not a signing subkey: it can never count
		}
		if err := check(sk.PublicKey); err != nil {
			return err
		}
	}
	return nil
}

func fingerprint(pk *packet.PublicKey) string {
	return strings.ToUpper(hex.EncodeToString(pk.Fingerprint))
}

func algorithmName(pk *packet.PublicKey) string {
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoEdDSA, packet.PubKeyAlgoEd25519:
		return "ed25519"
	case packet.PubKeyAlgoEd448:
		return "ed448"
	case packet.PubKeyAlgoECDSA:
		return "ecdsa"
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSASignOnly:
		bits, _ := pk.BitLength()
		return fmt.Sprintf("rsa%d", bits)
	}
	return fmt.Sprintf("algorithm-%d", pk.PubKeyAlgo)
}

// splitUID turns "Name <email>" into its parts.
func splitUID(uid string) (name, email string, err error) {
	uid = strings.TrimSpace(uid)
	if uid == "" {
		return "", "", errors.New("user id is empty: give one like \"Release Team <release@example.com>\"")
	}
	if i := strings.IndexByte(uid, '<'); i >= 0 {
		if !strings.HasSuffix(uid, ">") {
			return "", "", fmt.Errorf("user id %q: email must end with '>'", uid)
		}
		name, email = strings.TrimSpace(uid[:i]), uid[i+1:len(uid)-1]
	} else {
		name = uid
	}
	if strings.ContainsAny(name, "()<>\x00") || strings.ContainsAny(email, "()<>\x00 ") {
		return "", "", fmt.Errorf("user id %q: name and email must not contain ()<> or NUL", uid)
	}
	return name, email, nil
}
