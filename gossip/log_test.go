package gossip

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestSerfLinesAtTheirLevel: serf's and memberlist's prefixes become
// slog levels, and serf's line for every member tag change is DEBUG, not
// INFO (it was a third of the INFO lines on a 3-host fleet), while joins
// stay INFO.
func TestSerfLinesAtTheirLevel(t *testing.T) {
	var buf bytes.Buffer
	l := newStdLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "serf", nil)
	for _, line := range []string{
		"[INFO] serf: EventMemberUpdate: host-1",
		"[INFO] serf: EventMemberJoin: host-2 127.0.0.1",
		"[WARN] memberlist: Refuting a suspect message",
		"[ERR] memberlist: Failed to send",
		"[DEBUG] serf: messageJoinType: host-1",
	} {
		l.Print(line)
	}
	want := []string{
		`level=DEBUG msg="serf: EventMemberUpdate: host-1" library=serf`,
		`level=INFO msg="serf: EventMemberJoin: host-2 127.0.0.1" library=serf`,
		`level=WARN msg="memberlist: Refuting a suspect message" library=serf`,
		`level=ERROR msg="memberlist: Failed to send" library=serf`,
		`level=DEBUG msg="serf: messageJoinType: host-1" library=serf`,
	}
	got := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(got) != len(want) {
		t.Fatalf("logged %d lines, want %d:\n%s", len(got), len(want), buf.String())
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("line %d: %q, want it to contain %q", i, got[i], want[i])
		}
	}
}
