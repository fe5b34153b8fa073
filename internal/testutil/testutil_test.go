package testutil

import (
	"errors"
	"testing"
	"time"
)

func TestWithinFollowsTheEnvironment(t *testing.T) {
	t.Setenv(ScaleEnv, "2.5")
	want := 25 * time.Second
	if raceEnabled {
		want *= RaceScale
	}
	if got := Within(10 * time.Second); got != want {
		t.Errorf("Within(10s) with scale 2.5: %s, want %s", got, want)
	}
	t.Setenv(ScaleEnv, "")
	if got, want := Within(time.Second), time.Second*time.Duration(map[bool]int{true: RaceScale, false: 1}[raceEnabled]); got != want {
		t.Errorf("Within(1s) unscaled: %s, want %s", got, want)
	}
}

func TestScaleRefusesNonsense(t *testing.T) {
	for _, v := range []string{"0", "-1", "NaN", "fast", "1e9"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv(ScaleEnv, v)
			defer func() {
				if recover() == nil {
					t.Errorf("%s=%s was taken", ScaleEnv, v)
				}
			}()
			Scale()
		})
	}
}

// fakeTB records a failure instead of ending the test.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = format
	panic(f)
}

func TestEventually(t *testing.T) {
	t.Setenv(ScaleEnv, "1")
	calls := 0
	Eventually(t, time.Second, "third call passes", func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	f := &fakeTB{TB: t}
	start := time.Now()
	func() {
		defer func() { _ = recover() }()
		Eventually(f, 100*time.Millisecond, "never", func() error { return errors.New("no") })
	}()
	if f.failed == "" {
		t.Fatal("a check that never passes did not fail the test")
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("gave up after %s, before its deadline", took)
	}
}
