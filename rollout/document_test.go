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

// TestAmbiguousDocumentsRefused: plans, commands, re-keys and their wire
// form, signed by both trusted keys of a 2-of-2 policy, are refused when a
// key reads differently to a reviewer's JSON tool (exact names) and to the
// agent (encoding/json ignores case and keeps the last); the error names
// the key.
func TestAmbiguousDocumentsRefused(t *testing.T) {
	a, b := signer(t, "A <a@example.org>"), signer(t, "B <b@example.org>")
	policy, err := signing.NewPolicy(signing.NewKeyring(a.Public(), b.Public()), 2, signing.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	both := func(body string) [][]byte { return [][]byte{sign(t, a, []byte(body)), sign(t, b, []byte(body))} }

	for _, tt := range []struct{ name, body, want string }{
		{"plan id in two cases", `{"id":"cmdline","ID":"evil-id","bundle":"` + digest + `","stages":[{"percent":100}]}`,
			`duplicate key "ID" in the object at $ (line 1): it differs from "id" only in case`},
		{"plan key twice", `{"id":"p","bundle":"` + digest + `","stages":[{"percent":1}],"stages":[{"percent":100}]}`,
			`duplicate key "stages" in the object at $ (line 1)`},
		{"plan tags in two cases", "id: p\nbundle: " + digest + "\nstages: [{percent: 100}]\ntarget:\n  tags: {ring: canary, Ring: all}\n",
			`duplicate key "Ring" in the object at $.target.tags (line 5): it differs from "ring" only in case`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			vp, err := rollout.VerifyPlan(rollout.SignPlan([]byte(tt.body), both(tt.body)), policy, now)
			if err == nil {
				t.Fatalf("accepted plan %+v", vp.Plan)
			}
			if !errors.Is(err, rollout.ErrDuplicateKey) || !errors.Is(err, rollout.ErrInvalidPlan) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a duplicate key saying %s", err, tt.want)
			}
		})
	}

	for _, tt := range []struct{ name, body, want string }{
		{"action in two cases", `{"plan":"` + digest + `","seq":1,"action":"halt","Action":"revoke","issued":"2026-11-27T11:00:00Z"}`,
			`duplicate key "Action" in the object at $: it differs from "action" only in case`},
		{"seq only by its case", `{"plan":"` + digest + `","SEQ":7,"action":"halt","issued":"2026-11-27T11:00:00Z"}`,
			`key "SEQ" in the object at $ is the field "seq" only when case is ignored`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := &rollout.Document{Kind: rollout.KindCommand, Body: []byte(tt.body), Signatures: both(tt.body)}
			vc, err := rollout.VerifyCommand(d, policy)
			if err == nil {
				t.Fatalf("accepted command %+v", vc.Command)
			}
			if !errors.Is(err, rollout.ErrDuplicateKey) || !errors.Is(err, rollout.ErrInvalidCommand) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a duplicate key saying %s", err, tt.want)
			}
		})
	}

	// A re-key: a reviewer's tool shows web-1, encoding/json took db-1.
	rekey := `{"node":"web-1","NODE":"db-1","key":"` + strings.Repeat("A", 43) + `","issued":"2026-11-27T11:00:00Z"}`
	d := &rollout.Document{Kind: rollout.KindRekey, Body: []byte(rekey), Signatures: both(rekey)}
	if vr, err := rollout.VerifyRekey(d, policy); err == nil {
		t.Fatalf("accepted re-key of %s", vr.Rekey.Node)
	} else if !errors.Is(err, rollout.ErrDuplicateKey) || !errors.Is(err, rollout.ErrInvalidRekey) ||
		!strings.Contains(err.Error(), `duplicate key "NODE" in the object at $: it differs from "node" only in case`) {
		t.Fatalf("re-key: err = %v", err)
	}

	wire := `{"kind":"command","Kind":"plan","body":"eA==","signatures":["eA=="]}`
	if _, err := rollout.DecodeDocument([]byte(wire)); !errors.Is(err, rollout.ErrDuplicateKey) || !errors.Is(err, rollout.ErrInvalidDocument) ||
		!strings.Contains(err.Error(), `duplicate key "Kind"`) {
		t.Fatalf("DecodeDocument(%s): err = %v", wire, err)
	}
}
