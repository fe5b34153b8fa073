package lab

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

var shared struct {
	once   sync.Once
	kernel *Kernel
	err    error
}

// fetchKernel fetches the lab kernel once per test binary; a failure is
// fatal (the lab's tests run, they never skip).
func fetchKernel(t *testing.T) *Kernel {
	t.Helper()
	shared.once.Do(func() {
		start := time.Now()
		shared.kernel, shared.err = Fetch(context.Background(), FetchOptions{Log: logWriter{t}})
		if shared.err == nil {
			t.Logf("Fetch: %s in %.1fs", shared.kernel, time.Since(start).Seconds())
		}
	})
	if shared.err != nil {
		t.Fatalf("lab: %v", shared.err)
	}
	return shared.kernel
}

// logWriter sends lines to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
