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
func newStdLogger(l *slog.Logger, library string) *log.Logger {
	return log.New(&slogWriter{l: l.With("library", library)}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

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

func (w *slogWriter) Write(p []byte) (int, error) {
	msg := bytes.TrimSpace(p)
	level := slog.LevelInfo
	for _, lp := range levelPrefixes {
		if bytes.HasPrefix(msg, lp.prefix) {
			level, msg = lp.level, msg[len(lp.prefix):]
			break
		}
	}
	w.l.Log(context.Background(), level, string(msg))
	return len(p), nil
}
