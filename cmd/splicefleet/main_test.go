package main

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// TestMain lets tests run this test binary as the splicefleet command in a
// child process (SPLICEFLEET_TEST_AS_CLI=1), so crash tests can SIGKILL a
// real process. SPLICEFLEET_TEST_KILL_AT=STEP makes the child kill itself
// right after that step of apply or undo, and SPLICEFLEET_TEST_STEPS=1
// makes it report each step on stderr (stepPrefix, the step, a newline) as
// soon as it is journaled. SPLICEFLEET_TEST_UDP=1 makes the child a UDP
// echo or prober (udpTool) instead. None of them exists in the real
// binary.
func TestMain(m *testing.M) {
	if os.Getenv("SPLICEFLEET_TEST_UDP") == "1" {
		os.Exit(udpTool(os.Args[1:]))
	}
	if os.Getenv("SPLICEFLEET_TEST_AS_CLI") == "1" {
		e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now}
		at, report := os.Getenv("SPLICEFLEET_TEST_KILL_AT"), os.Getenv("SPLICEFLEET_TEST_STEPS") == "1"
		if at != "" || report {
			e.stepHook = func(step string) {
				if report {
					_, _ = os.Stderr.WriteString(stepPrefix + step + "\n")
				}
				if step == at {
					_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {}
				}
			}
		}
		os.Exit(runEnv(e, os.Args[1:]))
	}
	os.Exit(m.Run())
}
