package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// newStdLogger adapts a slog.Logger to the *log.Logger that serf and
// memberlist take. Their lines start with "[DEBUG]", "[INFO]", "[WARN]" or
// "[ERR]"; the prefix becomes the slog level, and the library is named in
// a "library" attribute (the caller's logger may carry a "component").
func newStdLogger(l *slog.Logger, library string, outsider func()) *log.Logger {
	return log.New(&slogWriter{l: l.With("library", library), outsider: outsider}, "", 0)
}

type slogWriter struct {
	l *slog.Logger
	// outsider, when set, hears every message refused as coming from
	// outside the cluster.
	outsider func()
}

// outsiderLines are how memberlist reports a packet or a stream it
// refused because it was not encrypted with a key of the keyring (a host
// without the gossip key, or with another one), or carried another
// cluster's label. memberlist has no counter or hook for them.
var outsiderLines = [][]byte{
	[]byte("Decrypt packet failed"),
	[]byte("No installed keys could decrypt"),
	[]byte("remote state is not encrypted"),
	[]byte("unacceptable label"),
}

var levelPrefixes = []struct {
	prefix []byte
	level  slog.Level
}{
	{[]byte("[DEBUG] "), slog.LevelDebug},
	{[]byte("[INFO] "), slog.LevelInfo},
	{[]byte("[WARN] "), slog.LevelWarn},
	{[]byte("[ERR] "), slog.LevelError},
	{[]byte("[ERROR] "), slog.LevelError},
}

// routineLines are what serf logs at INFO for every tag change of every
// member (a host's rollout reports ride on its tags): on a small fleet
// they were a third of the agent's INFO lines, so they are DEBUG here.
// Joins, leaves and failures stay INFO.
var routineLines = [][]byte{
	[]byte("EventMemberUpdate:"),
}

func (w *slogWriter) Write(p []byte) (int, error) {
	msg := bytes.TrimSpace(p)
	level := slog.LevelInfo
	for _, lp := range levelPrefixes {
		if bytes.HasPrefix(msg, lp.prefix) {
			level, msg = lp.level, msg[len(lp.prefix):]
			break
		}
	}
	if level == slog.LevelInfo {
		for _, r := range routineLines {
			if bytes.Contains(msg, r) {
				level = slog.LevelDebug
				break
			}
		}
	}
	if w.outsider != nil {
		for _, o := range outsiderLines {
			if bytes.Contains(msg, o) {
				w.outsider()
				break
			}
		}
	}
	w.l.Log(context.Background(), level, string(msg))
	return len(p), nil
}
