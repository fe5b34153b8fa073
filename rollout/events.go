package rollout

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Gossip user events of rollouts.
const (
	// FailureEvent carried the unsigned failure reports of releases
	// before host keys. Agents refuse and count it: no host's word counts
	// unless the host signed it (see ReportEvent).
	FailureEvent = "sf-fail"
	// DocEvent carries a DocAnnouncement: where to fetch a signed plan or
	// command, which the receiver verifies before it acts.
	DocEvent = "sf-doc"
)

// ErrMalformedEvent reports a rollout event that does not decode.
var ErrMalformedEvent = errors.New("malformed rollout event")

const eventProtocol = 1

// Bounds of a failure report's node name and reason.
const (
	maxNode   = 128
	maxReason = 200
)

// DocAnnouncement says a signed document exists and where to fetch it.
type DocAnnouncement struct {
	Kind   string // KindPlan, KindCommand or KindRekey
	Digest string
	Origin string // host:port of a blob service holding it
}

var docKinds = []string{KindPlan, KindCommand, KindRekey}

// EncodeDocAnnouncement returns the event payload:
// protocol u8 | kind u8 | digest [32]byte | len u8 | origin.
func EncodeDocAnnouncement(a DocAnnouncement) ([]byte, error) {
	k := slices.Index(docKinds, a.Kind)
	d, err := hex.DecodeString(a.Digest)
	if k < 0 || err != nil || len(d) != 32 || a.Origin == "" || len(a.Origin) > 255 {
		return nil, fmt.Errorf("%w: document announcement %+v", ErrMalformedEvent, a)
	}
	b := append([]byte{eventProtocol, byte(k)}, d...)
	b = append(b, byte(len(a.Origin)))
	return append(b, a.Origin...), nil
}

// DecodeDocAnnouncement parses EncodeDocAnnouncement's payload.
func DecodeDocAnnouncement(b []byte) (DocAnnouncement, error) {
	r := evReader{b: b}
	if r.u8() != eventProtocol {
		return DocAnnouncement{}, fmt.Errorf("%w: protocol", ErrMalformedEvent)
	}
	k := int(r.u8())
	var a DocAnnouncement
	a.Digest = hex.EncodeToString(r.bytes(32))
	a.Origin = string(r.bytes(int(r.u8())))
	if r.bad || len(r.b) != 0 || k >= len(docKinds) || a.Origin == "" {
		return DocAnnouncement{}, fmt.Errorf("%w: document announcement", ErrMalformedEvent)
	}
	a.Kind = docKinds[k]
	return a, nil
}

type evReader struct {
	b   []byte
	bad bool
}

func (r *evReader) u8() byte {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *evReader) bytes(n int) []byte {
	if len(r.b) < n {
		r.bad = true
		r.b = nil
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// HostState is what a host reports about one rollout.
type HostState byte

// Host states, as they appear in the reports tag.
const (
	StateNone       HostState = 0
	StateApplying   HostState = 'a' // applied, inside its health window
	StateHealthy    HostState = 'h' // passed its health window
	StateFailed     HostState = 'f' // the apply or the health check failed; undone
	StateRolledBack HostState = 'r' // undone because the rollout halted
	StateHalted     HostState = 'x' // never applied; the rollout halted first
)

func (s HostState) String() string {
	switch s {
	case StateNone:
		return "none"
	case StateApplying:
		return "applying"
	case StateHealthy:
		return "healthy"
	case StateFailed:
		return "failed"
	case StateRolledBack:
		return "rolled-back"
	case StateHalted:
		return "halted"
	}
	return "unknown"
}

// ReportsTag is the gossip tag that carries a host's reports.
const ReportsTag = "sf.ro"

// reportKeyLen is how many hex digits of a plan digest name it in the
// reports tag: short, because serf allows 512 bytes of tags in all.
const reportKeyLen = 10

// MaxReports bounds the reports one host gossips; the oldest go first.
const MaxReports = 8

// Report is one host's state in one rollout.
type Report struct {
	Plan  string // plan digest (full when encoding, reportKeyLen when decoded)
	State HostState
}

// EncodeReports renders reports as "key=state,...", keeping the last
// MaxReports.
func EncodeReports(rs []Report) string {
	rs = rs[max(0, len(rs)-MaxReports):]
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		if r.State == StateNone || len(r.Plan) < reportKeyLen {
			continue
		}
		parts = append(parts, r.Plan[:reportKeyLen]+"="+string(rune(r.State)))
	}
	return strings.Join(parts, ",")
}

// DecodeReports parses a reports tag into key → state, ignoring what it
// does not understand (a newer agent may report more).
func DecodeReports(tag string) map[string]HostState {
	out := map[string]HostState{}
	for part := range strings.SplitSeq(tag, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || len(k) != reportKeyLen || len(v) != 1 {
			continue
		}
		switch s := HostState(v[0]); s {
		case StateApplying, StateHealthy, StateFailed, StateRolledBack, StateHalted:
			out[k] = s
		}
	}
	return out
}

// ReportKey is how the reports tag names a plan.
func ReportKey(planDigest string) string { return planDigest[:min(reportKeyLen, len(planDigest))] }
