package distrib

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/internal/bundletest"
)

// distNow is the fixed time the distribution tests judge signatures by.
var distNow = bundletest.Now

// distFixture holds a trusted signer, a stranger, and a policy trusting
// only the first.
type distFixture = bundletest.Fixture

var (
	newDistFixture = bundletest.New
	distManifest   = bundletest.Manifest
	newTestStore   = bundletest.OpenStore
	storeFiles     = bundletest.StoreFiles
)

// testLogger sends logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tLogWriter struct{ t testing.TB }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
