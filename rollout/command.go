package rollout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/splicefleet/splicefleet/internal/jsonkeys"
)

// Actions of operator commands.
const (
	ActionPromote = "promote" // open the next stage now
	ActionPause   = "pause"   // no new applies, no stage opens
	ActionResume  = "resume"  // undo a pause
	ActionHalt    = "halt"    // stop for good, keep what is applied
	ActionRevoke  = "revoke"  // stop for good and roll back everywhere
)

// Actions lists every action on a rollout.
var Actions = []string{ActionPromote, ActionPause, ActionResume, ActionHalt, ActionRevoke}

// ActionForget drops a held bundle's copies for distribution on every
// agent; it names a bundle, not a rollout. Agents refuse it for a bundle
// a running, paused or done rollout rolls out, and never undo or delete
// a patch a host applied (its own copy for re-apply at boot stays).
const ActionForget = "forget"

// Command is a signed operator command for one rollout.
type Command struct {
	// Plan is the digest of the plan it steers (empty for forget).
	Plan string `json:"plan"`
	// Bundle is the manifest digest of the bundle a forget drops (only
	// forget names one).
	Bundle string `json:"bundle,omitempty"`
	// Seq only grows for one rollout; each number is used once. A
	// forget, which steers no rollout, has none.
	Seq uint64 `json:"seq"`
	// Action is one of Actions.
	Action string `json:"action"`
	// Stage is the stage a promote opens (0-based index).
	Stage int `json:"stage,omitempty"`
	// Reason is for people.
	Reason string `json:"reason,omitempty"`
	// Issued is when the command was made.
	Issued time.Time `json:"issued"`
	// Digest is the signed document's digest, filled in by whoever
	// verified it; never part of the signed body.
	Digest string `json:"digest,omitempty"`
}

// Errors of commands.
var (
	ErrInvalidCommand = errors.New("invalid operator command")
	// ErrReplayed reports a command whose sequence number was used.
	ErrReplayed = errors.New("sequence number already used")
)

// EncodeCommand returns the bytes to sign.
func EncodeCommand(c Command) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	c.Digest = ""
	return json.Marshal(c)
}

// commandKeys knows a command's field names.
var commandKeys = jsonkeys.For(Command{})

// DecodeCommand parses a command strictly: unknown fields, trailing data
// and keys that other readers would read differently (ErrDuplicateKey) are
// errors.
func DecodeCommand(data []byte) (*Command, error) {
	if err := commandKeys.Check(data); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCommand, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Command
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCommand, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrInvalidCommand)
	}
	if c.Digest != "" {
		return nil, fmt.Errorf("%w: a signed command carries no digest", ErrInvalidCommand)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c Command) validate() error {
	if c.Action == ActionForget {
		switch {
		case !digestPattern.MatchString(c.Bundle):
			return fmt.Errorf("%w: forget: bundle %q is not a manifest digest", ErrInvalidCommand, c.Bundle)
		case c.Plan != "" || c.Seq != 0 || c.Stage != 0:
			return fmt.Errorf("%w: forget names a bundle, not a plan, a seq or a stage", ErrInvalidCommand)
		case len(c.Reason) > 256:
			return fmt.Errorf("%w: reason longer than 256 bytes", ErrInvalidCommand)
		case c.Issued.IsZero():
			return fmt.Errorf("%w: issued time missing", ErrInvalidCommand)
		}
		return nil
	}
	switch {
	case c.Bundle != "":
		return fmt.Errorf("%w: only forget names a bundle", ErrInvalidCommand)
	case !digestPattern.MatchString(c.Plan):
		return fmt.Errorf("%w: plan %q is not a plan digest", ErrInvalidCommand, c.Plan)
	case c.Seq == 0:
		return fmt.Errorf("%w: seq must be positive", ErrInvalidCommand)
	case !slices.Contains(Actions, c.Action):
		return fmt.Errorf("%w: action %q (want one of %v, or %s)", ErrInvalidCommand, c.Action, Actions, ActionForget)
	case c.Action == ActionPromote && (c.Stage < 1 || c.Stage >= maxStages):
		return fmt.Errorf("%w: promote needs the index of the stage it opens, 1 to %d (the second stage is 1)", ErrInvalidCommand, maxStages-1)
	case c.Action != ActionPromote && c.Stage != 0:
		return fmt.Errorf("%w: only promote names a stage", ErrInvalidCommand)
	case len(c.Reason) > 256:
		return fmt.Errorf("%w: reason longer than 256 bytes", ErrInvalidCommand)
	case c.Issued.IsZero():
		return fmt.Errorf("%w: issued time missing", ErrInvalidCommand)
	}
	return nil
}

// VerifiedCommand is a command whose signatures satisfied the trust
// policy.
type VerifiedCommand struct {
	Command
	Signers []string
	Doc     *Document
}

// VerifyCommand checks a command document's signatures, then parses it.
func VerifyCommand(d *Document, v Verifier) (*VerifiedCommand, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if d.Kind != KindCommand {
		return nil, fmt.Errorf("%w: a %s, not a command", ErrInvalidDocument, d.Kind)
	}
	signers, err := v.Verify(d.Body, d.Signatures)
	if err != nil {
		return nil, fmt.Errorf("command signatures: %w", err)
	}
	c, err := DecodeCommand(d.Body)
	if err != nil {
		return nil, err
	}
	c.Digest = d.Digest()
	return &VerifiedCommand{Command: *c, Signers: signers, Doc: d}, nil
}
