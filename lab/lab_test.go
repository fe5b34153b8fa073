package lab

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

var shared struct {
	once   sync.Once
	kernel *DebianKernel
	err    error
}

// fetchKernel fetches the lab kernel once per test binary; a failure is
// fatal (the lab's tests run, they never skip).
func fetchKernel(t *testing.T) *DebianKernel {
	t.Helper()
	if testing.Short() {
		t.Skip("boots real kernels under QEMU; make test and make lab run it (make check passes -short)")
	}
	shared.once.Do(func() {
		start := time.Now()
		shared.kernel, shared.err = Fetch(context.Background(), FetchOptions{Log: testutil.LogWriter(t)})
		if shared.err == nil {
			fmt.Printf("lab: kernel %s (Fetch %.1fs)\n", shared.kernel, time.Since(start).Seconds())
		}
	})
	if shared.err != nil {
		t.Fatalf("lab: %v", shared.err)
	}
	return shared.kernel
}

// splicefleetBinary builds the static binary once per test binary.
func splicefleetBinary(t *testing.T) string {
	t.Helper()
	p, err := BuildSplicefleet(context.Background(), "")
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	return p
}

// scenarioRow is one line of the summary TestMain prints.
type scenarioRow struct {
	name    string
	result  string
	seconds float64
	note    string
}

var summary struct {
	sync.Mutex
	rows []scenarioRow
}

// scenario records t in the summary table printed at the end of the run;
// note (filled in by the test, e.g. the boot times) is printed beside it.
func scenario(t *testing.T) *string {
	start := time.Now()
	note := new(string)
	t.Cleanup(func() {
		result := "pass"
		switch {
		case t.Failed():
			result = "FAIL"
		case t.Skipped():
			result = "skip"
		}
		summary.Lock()
		defer summary.Unlock()
		summary.rows = append(summary.rows, scenarioRow{t.Name(), result, time.Since(start).Seconds(), *note})
	})
	return note
}

// bootTimes describes results for the summary.
func bootTimes(rs ...*Result) string {
	var parts []string
	for _, r := range rs {
		if r != nil {
			parts = append(parts, fmt.Sprintf("%s: user at %.1fs, wall %.1fs", r.Name, r.BootToUser.Seconds(), r.Wall.Seconds()))
		}
	}
	return strings.Join(parts, "; ")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if labBundles.b != nil {
		// The signing keys of the scenarios live there: never leave them.
		_ = os.RemoveAll(labBundles.b.dir)
	}
	summary.Lock()
	rows := summary.rows
	summary.Unlock()
	if len(rows) > 0 {
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
		fmt.Println()
		if shared.kernel != nil {
			fmt.Printf("lab summary (kernel %s)\n", shared.kernel)
		} else {
			fmt.Println("lab summary")
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "SCENARIO\tRESULT\tSECONDS\tNOTE")
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%s\t%.1f\t%s\n", r.name, r.result, r.seconds, r.note)
		}
		_ = w.Flush()
	}
	os.Exit(code)
}
