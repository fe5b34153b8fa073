package rollout

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// KindRekey is an operator's signed re-key of a host: the way a
// reinstalled host's new key replaces the one the fleet pinned for its
// name (see package hostkey).
const KindRekey = "rekey"

// ErrInvalidRekey reports a re-key that does not decode or validate.
var ErrInvalidRekey = errors.New("invalid host re-key")

// Rekey names a node's new host key.
type Rekey struct {
	Node string `json:"node"`
	// Key is the new public key in the form of the sf.hk tag (unpadded
	// URL-safe base64 of 32 bytes).
	Key    string `json:"key"`
	Reason string `json:"reason,omitempty"`
	// Issued orders the re-keys of one node: an agent takes one only
	// when it was issued after the last it took for that node, so an
	// old re-key replayed cannot bring an old key back.
	Issued time.Time `json:"issued"`
}

func (r Rekey) validate() error {
	b, err := base64.RawURLEncoding.DecodeString(r.Key)
	switch {
	case r.Node == "" || len(r.Node) > maxNode:
		return fmt.Errorf("%w: node name of %d bytes", ErrInvalidRekey, len(r.Node))
	case err != nil || len(b) != 32:
		return fmt.Errorf("%w: key %q is not a host key (splicefleet hosts key prints one)", ErrInvalidRekey, r.Key)
	case r.Issued.IsZero():
		return fmt.Errorf("%w: no issue time", ErrInvalidRekey)
	case len(r.Reason) > 1024:
		return fmt.Errorf("%w: a reason of %d bytes", ErrInvalidRekey, len(r.Reason))
	}
	return nil
}

// EncodeRekey returns the bytes to sign.
func EncodeRekey(r Rekey) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// DecodeRekey parses a re-key strictly.
func DecodeRekey(data []byte) (*Rekey, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Rekey
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRekey, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrInvalidRekey)
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// VerifiedRekey is a re-key whose signatures satisfied the trust policy.
type VerifiedRekey struct {
	Rekey   Rekey
	Digest  string
	Signers []string
	Doc     *Document
}

// VerifyRekey checks a re-key document's signatures, then parses it.
func VerifyRekey(d *Document, v Verifier) (*VerifiedRekey, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if d.Kind != KindRekey {
		return nil, fmt.Errorf("%w: a %s, not a re-key", ErrInvalidDocument, d.Kind)
	}
	signers, err := v.Verify(d.Body, d.Signatures)
	if err != nil {
		return nil, fmt.Errorf("re-key signatures: %w", err)
	}
	r, err := DecodeRekey(d.Body)
	if err != nil {
		return nil, err
	}
	return &VerifiedRekey{Rekey: *r, Digest: d.Digest(), Signers: signers, Doc: d}, nil
}
