package splice

import (
	"errors"
	"fmt"
)

// Reasons a bundle is refused. A [*RejectError] wraps exactly one of them;
// test with errors.Is. [Reason] turns them into stable metric labels.
var (
	ErrFormat    = errors.New("malformed bundle")
	ErrTruncated = errors.New("truncated bundle")
	ErrTooLarge  = errors.New("bundle part too large")
	ErrVersion   = errors.New("unsupported bundle format version")
	ErrSignature = errors.New("signature check failed")
	ErrManifest  = errors.New("invalid manifest")
	// ErrDuplicateKey: the manifest holds a key twice, two keys that
	// differ only in case, or a field name in another case, so a
	// reviewer's tool and the agent would read different manifests.
	ErrDuplicateKey   = errors.New("ambiguous manifest")
	ErrExpired        = errors.New("bundle expired")
	ErrModuleDigest   = errors.New("module does not match the manifest")
	ErrNotLivepatch   = errors.New("not a livepatch module")
	ErrTargetMismatch = errors.New("bundle does not target this kernel")
)

var reasons = []struct {
	err   error
	label string
}{
	{ErrFormat, "format"},
	{ErrTruncated, "truncated"},
	{ErrTooLarge, "too_large"},
	{ErrVersion, "version"},
	{ErrSignature, "signature"},
	{ErrManifest, "manifest"},
	{ErrDuplicateKey, "duplicate_key"},
	{ErrExpired, "expired"},
	{ErrModuleDigest, "module_digest"},
	{ErrNotLivepatch, "not_livepatch"},
	{ErrTargetMismatch, "target"},
}

// RejectError is a refusal of bad input: never retry it, count and alert.
type RejectError struct {
	Reason error // one of the Err* values of this package
	Err    error // detail, possibly a signing.VerificationError
}

func reject(reason error, format string, args ...any) *RejectError {
	return &RejectError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

func (e *RejectError) Error() string {
	if e.Err == nil {
		return e.Reason.Error()
	}
	return e.Reason.Error() + ": " + e.Err.Error()
}

// Unwrap lets errors.Is see both the reason and the detail's own sentinels.
func (e *RejectError) Unwrap() []error { return []error{e.Reason, e.Err} }

// IsReject reports whether err is a refusal of bad input.
func IsReject(err error) bool {
	var r *RejectError
	return errors.As(err, &r)
}

// Reason returns a short, stable label for why err refused a bundle
// ("signature", "module_digest", ...), or "" when err is not a refusal.
func Reason(err error) string {
	var r *RejectError
	if !errors.As(err, &r) {
		return ""
	}
	for _, x := range reasons {
		if r.Reason == x.err {
			return x.label
		}
	}
	return "other"
}

// ReasonLabels lists every label [Reason] returns for a refusal, "other"
// last: the closed set metrics use for verification failures.
func ReasonLabels() []string {
	out := make([]string, 0, len(reasons)+1)
	for _, x := range reasons {
		out = append(out, x.label)
	}
	return append(out, "other")
}
