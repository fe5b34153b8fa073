package rollout_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/signing"
)

const digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func signer(t *testing.T, uid string) *signing.Signer {
	t.Helper()
	s, err := signing.GenerateSigner(uid, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sign(t *testing.T, s *signing.Signer, body []byte) []byte {
	t.Helper()
	sig, err := s.Sign(body, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// One test per attack on a plan or command document: each is refused with
// a message that says what is wrong.
func TestDocumentAttacks(t *testing.T) {
	trusted, stranger := signer(t, "Publisher <pub@example.org>"), signer(t, "Mallory <m@example.org>")
	policy, err := signing.NewPolicy(signing.NewKeyring(trusted.Public()), 1, signing.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	plan := []byte("id: p\nbundle: " + digest + "\nstages: [{percent: 100}]\n")
	expired := []byte(string(plan) + "expires: 2026-11-01T00:00:00Z\n")
	noStages := []byte("id: p\nbundle: " + digest + "\n")
	body, err := rollout.EncodeCommand(rollout.Command{Plan: digest, Seq: 1, Action: rollout.ActionHalt, Issued: now})
	if err != nil {
		t.Fatal(err)
	}

	good := rollout.SignPlan(plan, [][]byte{sign(t, trusted, plan)})
	wire, err := good.Encode()
	if err != nil {
		t.Fatal(err)
	}
	d, err := rollout.DecodeDocument(wire)
	if err != nil {
		t.Fatal(err)
	}
	vp, err := rollout.VerifyPlan(d, policy, now)
	if err != nil || vp.Plan.ID != "p" || vp.Digest != good.Digest() {
		t.Fatalf("a good plan: %v", err)
	}

	for _, tt := range []struct {
		name string
		doc  *rollout.Document
		want string
		is   error
	}{
		{"unsigned plan", &rollout.Document{Kind: rollout.KindPlan, Body: plan}, "unsigned", rollout.ErrInvalidDocument},
		{"signed by an untrusted key", rollout.SignPlan(plan, [][]byte{sign(t, stranger, plan)}), "plan signatures", nil},
		{"tampered plan", rollout.SignPlan([]byte(strings.Replace(string(plan), "100", "99", 1)), [][]byte{sign(t, trusted, plan)}), "plan signatures", nil},
		{"expired plan", rollout.SignPlan(expired, [][]byte{sign(t, trusted, expired)}), "expired at 2026-11-01", rollout.ErrExpired},
		{"plan without stages", rollout.SignPlan(noStages, [][]byte{sign(t, trusted, noStages)}), "needs stages", rollout.ErrInvalidPlan},
		{"a command posing as a plan", rollout.SignPlan(body, [][]byte{sign(t, trusted, body)}), "field", rollout.ErrInvalidPlan},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.doc.Err()
			if err == nil {
				_, err = rollout.VerifyPlan(tt.doc, policy, now)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}

	cmd := &rollout.Document{Kind: rollout.KindCommand, Body: body, Signatures: [][]byte{sign(t, trusted, body)}}
	vc, err := rollout.VerifyCommand(cmd, policy)
	if err != nil || vc.Action != rollout.ActionHalt {
		t.Fatalf("a good command: %v", err)
	}
	forged := &rollout.Document{Kind: rollout.KindCommand, Body: body, Signatures: [][]byte{sign(t, stranger, body)}}
	if _, err := rollout.VerifyCommand(forged, policy); !signing.IsVerificationError(err) {
		t.Errorf("a command signed by an untrusted key: err = %v", err)
	}
	for _, raw := range []string{"", "{", `{"kind":"plan","body":"eA==","signatures":["eA=="],"extra":1}`, strings.Repeat(" ", rollout.MaxDocumentSize+1)} {
		if _, err := rollout.DecodeDocument([]byte(raw)); !errors.Is(err, rollout.ErrInvalidDocument) {
			t.Errorf("DecodeDocument(%.20q): err = %v", raw, err)
		}
	}
}
