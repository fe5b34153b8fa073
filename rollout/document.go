package rollout

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Kinds of documents.
const (
	KindPlan    = "plan"
	KindCommand = "command"
)

// Bounds of a document's encoding.
const (
	MaxDocumentSize = 64 << 10
	maxSignatures   = 16
	maxSignature    = 4 << 10
)

// ErrInvalidDocument reports a document that cannot be decoded.
var ErrInvalidDocument = errors.New("invalid signed document")

// Document is a plan or a command as it travels: the exact bytes that were
// signed, and their detached OpenPGP signatures.
type Document struct {
	Kind       string   `json:"kind"`
	Body       []byte   `json:"body"`
	Signatures [][]byte `json:"signatures"`
}

// Digest is the hex SHA-256 of the body: the document's identity.
func (d *Document) Digest() string {
	sum := sha256.Sum256(d.Body)
	return hex.EncodeToString(sum[:])
}

// Encode returns the document's wire form (JSON).
func (d *Document) Encode() ([]byte, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	return json.Marshal(d)
}

// DecodeDocument parses a document's wire form, strictly and bounded. It
// does not verify signatures: see [Verifier].
func DecodeDocument(data []byte) (*Document, error) {
	if len(data) > MaxDocumentSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidDocument, len(data), MaxDocumentSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var d Document
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidDocument, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrInvalidDocument)
	}
	if err := d.check(); err != nil {
		return nil, err
	}
	return &d, nil
}

func (d *Document) check() error {
	switch {
	case d.Kind != KindPlan && d.Kind != KindCommand && d.Kind != KindRekey:
		return fmt.Errorf("%w: kind %q", ErrInvalidDocument, d.Kind)
	case len(d.Body) == 0:
		return fmt.Errorf("%w: empty body", ErrInvalidDocument)
	case len(d.Signatures) == 0:
		return fmt.Errorf("%w: unsigned (sign it with a trusted key)", ErrInvalidDocument)
	case len(d.Signatures) > maxSignatures:
		return fmt.Errorf("%w: %d signatures, limit %d", ErrInvalidDocument, len(d.Signatures), maxSignatures)
	}
	for _, s := range d.Signatures {
		if len(s) == 0 || len(s) > maxSignature {
			return fmt.Errorf("%w: a signature of %d bytes", ErrInvalidDocument, len(s))
		}
	}
	return nil
}

// Verifier checks detached signatures against a trust policy; a
// *signing.Policy is one.
type Verifier interface {
	Verify(message []byte, signatures [][]byte) (signers []string, err error)
}

// VerifiedPlan is a plan whose signatures satisfied the trust policy.
type VerifiedPlan struct {
	Plan    *Plan
	Digest  string // of the signed body
	Signers []string
	Doc     *Document
}

// VerifyPlan checks a plan document's signatures, then parses the plan,
// and refuses it when it expired.
func VerifyPlan(d *Document, v Verifier, now time.Time) (*VerifiedPlan, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if d.Kind != KindPlan {
		return nil, fmt.Errorf("%w: a %s, not a plan", ErrInvalidDocument, d.Kind)
	}
	signers, err := v.Verify(d.Body, d.Signatures)
	if err != nil {
		return nil, fmt.Errorf("plan signatures: %w", err)
	}
	p, err := DecodePlan(d.Body)
	if err != nil {
		return nil, err
	}
	if p.Expires != nil && !now.Before(*p.Expires) {
		return nil, fmt.Errorf("%w: plan %s expired at %s", ErrExpired, p.ID, p.Expires.UTC().Format(time.RFC3339))
	}
	return &VerifiedPlan{Plan: p, Digest: d.Digest(), Signers: signers, Doc: d}, nil
}

// ErrExpired reports a plan past its expiry.
var ErrExpired = errors.New("expired")

// SignPlan wraps plan bytes and their signatures in a document.
func SignPlan(body []byte, signatures [][]byte) *Document {
	return &Document{Kind: KindPlan, Body: body, Signatures: signatures}
}

// Err reports what is wrong with the document's form, before any
// signature is checked.
func (d *Document) Err() error { return d.check() }
