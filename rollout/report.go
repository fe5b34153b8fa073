package rollout

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// ReportEvent carries a host's signed report (EncodeReport's bytes): the
// only host word a rollout judgement takes.
const ReportEvent = "sf-rep"

// Errors of signed reports.
var (
	// ErrUnsignedReport: a report with no host signature (the "sf-fail"
	// event of earlier releases), refused.
	ErrUnsignedReport = errors.New("unsigned host report")
	// ErrReportSignature: the signature does not verify.
	ErrReportSignature = errors.New("host report signature does not verify")
)

// reportProtocol versions the signed report's encoding.
const reportProtocol = 2

// reportContext separates a host report's signatures from anything else
// a host key might sign.
const reportContext = "splicefleet host report\x00"

// MaxReportSize bounds an encoded report: it travels in one serf user
// event, whose name and payload serf limits to 512 bytes.
const MaxReportSize = 1 + 32 + 1 + 8 + 1 + maxNode + 1 + maxReason + ed25519.PublicKeySize + ed25519.SignatureSize

// HostReport is what a host says about its own part in one rollout.
type HostReport struct {
	Plan  string // plan digest, hex
	Node  string
	State HostState
	// Seq orders one host's reports for one plan: a higher one
	// supersedes a lower one.
	Seq    uint64
	Reason string // at most 200 bytes, cut to fit
}

// SignedReport is a decoded report whose signature verified against the
// key it carries. Whether that key is the node's is the receiver's
// judgement (see package hostkey).
type SignedReport struct {
	HostReport
	Key  ed25519.PublicKey
	Wire []byte
}

// ReportSigner signs reports; *hostkey.Key is one.
type ReportSigner interface {
	Public() ed25519.PublicKey
	Sign(msg []byte) []byte
}

// EncodeReport signs a report:
// protocol u8 | plan [32]byte | state u8 | seq u64 | len u8 | node |
// len u8 | reason | key [32]byte | signature [64]byte, the signature over
// a context string and every byte before it.
func EncodeReport(r HostReport, k ReportSigner) ([]byte, error) {
	d, err := hex.DecodeString(r.Plan)
	if err != nil || len(d) != 32 {
		return nil, fmt.Errorf("%w: plan digest %q", ErrMalformedEvent, r.Plan)
	}
	if r.Node == "" || len(r.Node) > maxNode {
		return nil, fmt.Errorf("%w: node name of %d bytes", ErrMalformedEvent, len(r.Node))
	}
	if !r.State.valid() {
		return nil, fmt.Errorf("%w: state %q", ErrMalformedEvent, byte(r.State))
	}
	reason := cutUTF8(r.Reason, maxReason)
	b := make([]byte, 0, MaxReportSize)
	b = append(b, reportProtocol)
	b = append(b, d...)
	b = append(b, byte(r.State))
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = append(b, byte(len(r.Node)))
	b = append(b, r.Node...)
	b = append(b, byte(len(reason)))
	b = append(b, reason...)
	b = append(b, k.Public()...)
	return append(b, k.Sign(signedPart(b))...), nil
}

func signedPart(body []byte) []byte {
	return append([]byte(reportContext), body...)
}

// DecodeReport checks a report's signature against the key it carries,
// then parses it. The bytes are verified before any field is read.
func DecodeReport(b []byte) (*SignedReport, error) {
	const tail = ed25519.PublicKeySize + ed25519.SignatureSize
	if len(b) > 0 && b[0] == eventProtocol {
		return nil, ErrUnsignedReport
	}
	if len(b) > MaxReportSize || len(b) < 1+32+1+8+1+1+1+tail {
		return nil, fmt.Errorf("%w: host report of %d bytes", ErrMalformedEvent, len(b))
	}
	if b[0] != reportProtocol {
		return nil, fmt.Errorf("%w: host report protocol %d", ErrMalformedEvent, b[0])
	}
	body, sig := b[:len(b)-ed25519.SignatureSize], b[len(b)-ed25519.SignatureSize:]
	key := ed25519.PublicKey(body[len(body)-ed25519.PublicKeySize:])
	if !ed25519.Verify(key, signedPart(body), sig) {
		return nil, ErrReportSignature
	}
	r := evReader{b: body[1 : len(body)-ed25519.PublicKeySize]}
	var rep HostReport
	rep.Plan = hex.EncodeToString(r.bytes(32))
	rep.State = HostState(r.u8())
	rep.Seq = binary.BigEndian.Uint64(r.bytes(8))
	rep.Node = string(r.bytes(int(r.u8())))
	rep.Reason = string(r.bytes(int(r.u8())))
	if r.bad || len(r.b) != 0 || rep.Node == "" || len(rep.Node) > maxNode || len(rep.Reason) > maxReason || !rep.State.valid() {
		return nil, fmt.Errorf("%w: host report", ErrMalformedEvent)
	}
	return &SignedReport{HostReport: rep, Key: key, Wire: b}, nil
}

func (s HostState) valid() bool {
	switch s {
	case StateApplying, StateHealthy, StateFailed, StateRolledBack, StateHalted:
		return true
	}
	return false
}

// cutUTF8 cuts s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}
