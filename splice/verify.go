package splice

import (
	"crypto/subtle"
	"fmt"
	"time"
)

// Verifier checks detached signatures over a message under a trust policy
// and returns the fingerprints of the keys that count. signing.Policy
// implements it.
type Verifier interface {
	Verify(message []byte, signatures [][]byte) (signers []string, err error)
}

// Verified is a bundle whose signatures, manifest and module digest have
// been checked. Its fields are safe to act on.
type Verified struct {
	Manifest Manifest
	// ManifestDigest is the hex SHA-256 of the manifest bytes: the
	// bundle's identity, as announcements and stores name it.
	ManifestDigest string
	// Signers are the fingerprints of the trusted keys that signed.
	Signers []string
	// Module is the module's bytes, matching Manifest.Module.
	Module []byte
	// Bundle is the container it came from.
	Bundle *Bundle
}

// Verify checks a decoded bundle in the order the package doc gives:
// signatures over the raw manifest, then the manifest, its expiry at now,
// then the module's size and digest. It returns a *RejectError on any
// failure and changes nothing.
func Verify(b *Bundle, v Verifier, now time.Time) (*Verified, error) {
	signers, err := v.Verify(b.Manifest, b.Signatures)
	if err != nil {
		return nil, &RejectError{Reason: ErrSignature, Err: err}
	}
	m, err := ParseManifest(b.Manifest)
	if err != nil {
		return nil, err
	}
	if m.Expires != nil && now.After(*m.Expires) {
		return nil, reject(ErrExpired, "%s version %d expired at %s", m.ID, m.Version, m.Expires.UTC().Format(time.RFC3339))
	}
	if err := checkModule(m, b.Module); err != nil {
		return nil, err
	}
	return &Verified{Manifest: *m, ManifestDigest: Digest(b.Manifest), Signers: signers, Module: b.Module, Bundle: b}, nil
}

// checkModule compares a module's size and digest with the manifest's.
func checkModule(m *Manifest, module []byte) error {
	if int64(len(module)) != m.Module.Size {
		return reject(ErrModuleDigest, "module is %d bytes, manifest says %d", len(module), m.Module.Size)
	}
	got := Digest(module)
	if subtle.ConstantTimeCompare([]byte(got), []byte(m.Module.SHA256)) != 1 {
		return reject(ErrModuleDigest, "module sha256 %s, manifest says %s", got, m.Module.SHA256)
	}
	return nil
}

// CheckModule reports whether module is the one an unverified manifest
// pins. Tools that only display a bundle use it before parsing the module.
func (b *Bundle) CheckModule() error {
	m, err := ParseManifest(b.Manifest)
	if err != nil {
		return err
	}
	return checkModule(m, b.Module)
}

// New makes an unsigned bundle from a manifest and a module. It fills in
// the module's digest and size, validates the manifest and encodes it.
func New(m Manifest, module []byte) (*Bundle, error) {
	if len(module) == 0 {
		return nil, fmt.Errorf("new bundle: the module is empty")
	}
	if len(module) > MaxModuleSize {
		return nil, fmt.Errorf("new bundle: module is %d bytes, limit %d", len(module), MaxModuleSize)
	}
	m.Module.SHA256 = Digest(module)
	m.Module.Size = int64(len(module))
	m.Created = m.Created.UTC().Truncate(time.Second)
	if m.Expires != nil {
		e := m.Expires.UTC().Truncate(time.Second)
		m.Expires = &e
	}
	raw, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("new bundle: %w", err)
	}
	return &Bundle{Major: FormatMajor, Minor: FormatMinor, Manifest: raw, Module: append([]byte(nil), module...)}, nil
}
