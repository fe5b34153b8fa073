package splice

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/splicefleet/splicefleet/internal/fileperm"
)

// StoredVerifier is the host's trust policy as Boot and undo's put-back
// use it: Verify judges a signature now; VerifyAsOf judges it as of the
// time the bundle was verified and applied, with revocation judged now
// (signing.Policy implements both).
type StoredVerifier interface {
	Verifier
	VerifyAsOf(message []byte, signatures [][]byte, verifiedAt time.Time) (signers []string, err error)
}

// ErrNoPolicy: a stored bundle must be loaded again (at boot, or put back
// by an undo) and the Host was opened without a trust policy to verify it
// against. Nothing was loaded and nothing was marked failed.
var ErrNoPolicy = errors.New("no trust policy to verify the stored bundle against")

// The verdicts of the trust check of a stored bundle (TrustVerdict.Verdict).
const (
	// VerdictRefused: the stored bundle no longer meets the trust policy
	// (a signer's key was revoked or left the keyring, the threshold is
	// not met, the bundle was tampered with); the patch is not loaded
	// and is marked failed.
	VerdictRefused = "refused"
	// VerdictKeptExpired: the bundle, or a signature or key on it, expired
	// after the patch was applied; the patch is loaded again, with a
	// warning, because taking a fix away because time passed is not the
	// careful side.
	VerdictKeptExpired = "kept_expired"
)

// TrustVerdict is the outcome of the trust check of a stored bundle that
// was not simply "still valid": refused, or kept although expired.
type TrustVerdict struct {
	ID      string    `json:"id"`
	Version uint64    `json:"version"`
	Verdict string    `json:"verdict"` // VerdictRefused or VerdictKeptExpired
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// maxVerdicts bounds the trust verdicts the journal keeps for a callback.
const maxVerdicts = 32

// CheckStateDir refuses a state directory that another user could change:
// one not owned by root or by this process's user, or writable by group or
// others (see package fileperm). A missing directory is not an error.
func CheckStateDir(dir string) error {
	fi, err := os.Stat(dir) // the directory a configured link names is judged
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory", dir)
	}
	return fileperm.Check(dir, fi)
}

// verifiedAt is when the patch's bundle was verified for its apply:
// expiry is judged as of then. Journals written before VerifiedAt was
// recorded give the time of the last apply instead, which is later and
// so never kinder.
func (p *Patch) verifiedAt(now time.Time) time.Time {
	switch {
	case !p.VerifiedAt.IsZero():
		return p.VerifiedAt
	case !p.AppliedAt.IsZero():
		return p.AppliedAt
	}
	return now
}

// reverify judges a stored patch's bundle against the host's trust policy
// before it is loaded again (step is "boot" or "put back"). It returns a
// note when the patch is kept although its bundle, a signature or a key
// expired since it was applied, a *RejectError when the policy refuses it
// (signatures under today's keyring, threshold and revocations; the
// manifest; the module's digest), and ErrNoPolicy without a policy.
func (h *Host) reverify(p *Patch) (note string, err error) {
	b, err := h.readStored(p)
	if err != nil {
		return "", err
	}
	if h.cfg.Policy == nil {
		return "", fmt.Errorf("%s version %d: %w (give the host's configuration or --keyring)", p.ID, p.Version, ErrNoPolicy)
	}
	now := h.cfg.Now()
	at := p.verifiedAt(now)
	if _, err := h.cfg.Policy.VerifyAsOf(b.Manifest, b.Signatures, at); err != nil {
		return "", &RejectError{Reason: ErrSignature, Err: err}
	}
	m, err := ParseManifest(b.Manifest)
	if err != nil {
		return "", err
	}
	if m.Module.SHA256 != p.ModuleDigest || m.Module.Name != p.Module || m.ID != p.ID || m.Version != p.Version {
		return "", reject(ErrManifest, "the stored manifest is not the one the journal records (%s version %d, module %s)", m.ID, m.Version, m.Module.Name)
	}
	if m.Expires != nil && at.After(*m.Expires) {
		return "", reject(ErrExpired, "%s version %d expired at %s, before it was applied", m.ID, m.Version, m.Expires.UTC().Format(time.RFC3339))
	}
	mod, err := h.openModule(p)
	if err != nil {
		return "", err
	}
	mod.Close()
	var notes []string
	if m.Expires != nil && now.After(*m.Expires) {
		notes = append(notes, fmt.Sprintf("bundle expired at %s, after it was applied", m.Expires.UTC().Format(time.RFC3339)))
	}
	if _, err := h.cfg.Policy.Verify(b.Manifest, b.Signatures); err != nil {
		notes = append(notes, fmt.Sprintf("its signatures were valid when it was applied, not today (%v)", err))
	}
	if len(notes) == 0 {
		return "", nil
	}
	return strings.Join(notes, "; ") + "; kept: a fix already applied is not taken away because time passed (a revoked key would be)", nil
}

// readStored reads a stored bundle's head (the module is checked
// through the descriptor it is loaded from, openModule) without following
// links, refuses it when another user could have written it, and checks
// that it is the one the journal recorded.
func (h *Host) readStored(p *Patch) (*Bundle, error) {
	if !ValidDigest(p.ManifestDigest) {
		return nil, fmt.Errorf("%w: the journal names bundle %q", ErrStore, p.ManifestDigest)
	}
	hd, err := h.bundles.readHead(p.ManifestDigest)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	return &Bundle{Major: FormatMajor, Minor: FormatMinor, Manifest: hd.Manifest, Signatures: hd.Signatures}, nil
}

// judgeStored runs reverify for a patch about to be loaded again and
// records the outcome: a refusal marks the patch failed with the reason,
// a kept expired bundle gets its note (shown by View); both are logged at
// WARN and handed to OnTrustVerdict. ok says whether to load it.
func (h *Host) judgeStored(p *Patch, info KernelInfo, step string) (ok bool, err error) {
	note, err := h.reverify(p)
	switch {
	case errors.Is(err, ErrNoPolicy):
		return false, err
	case err != nil:
		why := "the stored copy is damaged or unsafe"
		if IsReject(err) {
			why = "refused by the trust policy"
		}
		h.log.Warn("stored bundle refused; the patch is not loaded again", "patch", p.ID, "version", p.Version, "step", step, "why", why, "reason", err.Error())
		h.verdict(p, VerdictRefused, err.Error())
		p.TrustNote = ""
		return false, h.fail(p, info, fmt.Errorf("%s: %s: %w", step, why, err))
	case note != "":
		h.log.Warn("stored bundle expired since it was applied; loading it again", "patch", p.ID, "version", p.Version, "step", step, "reason", note)
		h.verdict(p, VerdictKeptExpired, note)
	}
	p.TrustNote = note
	return true, nil
}

// verdict hands a trust verdict to OnTrustVerdict, or keeps it in the
// journal (the newest maxVerdicts) for a Host that has the callback.
func (h *Host) verdict(p *Patch, verdict, reason string) {
	v := TrustVerdict{ID: p.ID, Version: p.Version, Verdict: verdict, Reason: reason, At: h.cfg.Now().UTC()}
	if h.cfg.OnTrustVerdict != nil {
		h.cfg.OnTrustVerdict(v)
		return
	}
	h.journal.Verdicts = append(h.journal.Verdicts, v)
	if n := len(h.journal.Verdicts); n > maxVerdicts {
		h.journal.Verdicts = append([]TrustVerdict(nil), h.journal.Verdicts[n-maxVerdicts:]...)
	}
}
