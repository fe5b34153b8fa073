package signing

import (
	"errors"
	"fmt"
	"strings"
)

// Reasons a signature does not count. A [*VerificationError] wraps one or
// more of them; test for them with errors.Is.
var (
	ErrNoSignatures       = errors.New("no signatures")
	ErrBelowThreshold     = errors.New("not enough valid signatures")
	ErrMalformedSignature = errors.New("malformed signature")
	ErrWeakHash           = errors.New("weak hash algorithm")
	ErrUnknownSigner      = errors.New("signer is not a trusted key")
	ErrBadSignature       = errors.New("signature does not match")
	ErrFutureSignature    = errors.New("signature made in the future")
	ErrExpiredSignature   = errors.New("signature expired")
	ErrRevokedKey         = errors.New("key revoked")
	ErrExpiredKey         = errors.New("key expired")
	ErrDuplicateSigner    = errors.New("key already counted")
)

// ErrSharedKeyMaterial reports a keyring in which two different keys hold
// the same public key material: one secret under two fingerprints, which
// must not count as two signers.
var ErrSharedKeyMaterial = errors.New("two keys share one key material")

// Rejection says why one signature did not count.
type Rejection struct {
	Index  int    // position of the signature, from 1
	Issuer string // key id or fingerprint the signature names, if it could be read
	Err    error  // one of the Err* reasons, possibly wrapped with detail
}

func (r Rejection) String() string {
	if r.Issuer == "" {
		return fmt.Sprintf("signature %d: %v", r.Index, r.Err)
	}
	return fmt.Sprintf("signature %d by %s: %v", r.Index, r.Issuer, r.Err)
}

// VerificationError is returned when a message does not satisfy the trust
// policy. It means the input is bad: never retry it, count it and alert.
type VerificationError struct {
	Required   int         // the policy's threshold
	Valid      int         // distinct trusted keys that signed validly
	Total      int         // signatures examined
	Rejections []Rejection // signatures that did not count
}

func (e *VerificationError) Error() string {
	var b strings.Builder
	b.WriteString("verification failed: ")
	if e.Valid == 0 && len(e.Rejections) == 0 {
		fmt.Fprintf(&b, "no signatures (need %d)", e.Required)
		return b.String()
	}
	fmt.Fprintf(&b, "%d of %d required signatures valid", e.Valid, e.Required)
	if len(e.Rejections) == 0 {
		fmt.Fprintf(&b, " (%d present; each key counts once)", e.Total)
	}
	for _, r := range e.Rejections {
		b.WriteString("; ")
		b.WriteString(r.String())
	}
	return b.String()
}

// Unwrap exposes ErrBelowThreshold (or ErrNoSignatures) and the reason of
// every rejected signature to errors.Is.
func (e *VerificationError) Unwrap() []error {
	errs := make([]error, 0, len(e.Rejections)+1)
	if e.Valid == 0 && len(e.Rejections) == 0 {
		errs = append(errs, ErrNoSignatures)
	} else {
		errs = append(errs, ErrBelowThreshold)
	}
	for _, r := range e.Rejections {
		errs = append(errs, r.Err)
	}
	return errs
}

// IsVerificationError reports whether err is, or wraps, a verification
// failure (as opposed to an I/O or configuration error).
func IsVerificationError(err error) bool {
	var v *VerificationError
	return errors.As(err, &v)
}
