// Package testutil holds what the tests of several packages share: one
// factor that stretches every wait, and the wait itself; a logger that
// writes to the test's log; a tree of files written for a test; and
// Prometheus's linter run over an exposition.
//
// The suite runs on shared machines, under the race detector, and beside
// other heavy jobs; gossip, fetches and rollouts then take several times
// longer than on an idle machine. A test never picks its own wall-clock
// limit for something the machine's speed decides: it names the time an
// idle machine needs with room to spare, and waits Within that, which is
// that time multiplied by Scale. Scale is SPLICEFLEET_TEST_TIMEOUT_SCALE
// (1 when unset), multiplied by RaceScale when the race detector is on.
// A slow machine raises the factor; nothing else in a test changes.
//
// The package imports testing and runs promtool: only test files may
// import it (a depguard rule says so), and a test of cmd/splicefleet
// checks that the binary does not link it.
package testutil

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ScaleEnv names the environment variable that stretches every wait.
const ScaleEnv = "SPLICEFLEET_TEST_TIMEOUT_SCALE"

// RaceScale is how much longer waits are under the race detector, which
// slows Go code five to ten times and gossip's timers with it.
const RaceScale = 3

// Scale is the factor every test wait is multiplied by.
func Scale() float64 {
	s := 1.0
	if v := os.Getenv(ScaleEnv); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) || f > 1000 {
			panic(fmt.Sprintf("%s=%q: want a number above 0", ScaleEnv, v))
		}
		s = f
	}
	if raceEnabled {
		s *= RaceScale
	}
	return s
}

// Within is d stretched by Scale.
func Within(d time.Duration) time.Duration {
	return time.Duration(float64(d) * Scale())
}

// Eventually calls check until it returns nil, sleeping a little between
// calls, and fails the test when it still fails after Within(within).
func Eventually(t testing.TB, within time.Duration, what string, check func() error) {
	t.Helper()
	limit := Within(within)
	deadline := time.Now().Add(limit)
	pause := 20 * time.Millisecond
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (%s × %s=%g): %v", what, limit, within, ScaleEnv, Scale(), err)
		}
		time.Sleep(pause)
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// LogWriter sends what is written to t.Log, a line per write, until the
// test ends (a goroutine that logs after it would panic the test binary).
func LogWriter(t testing.TB) io.Writer {
	w := &logWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Helper()
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// Logger is a slog logger at level that writes to t.Log.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(LogWriter(t), &slog.HandlerOptions{Level: level}))
}
