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
// right after that step of apply or undo. Neither exists in the real
// binary. SPLICEFLEET_TEST_UDP=1 makes the child a UDP echo or prober
// (udpTool) instead.
func TestMain(m *testing.M) {
	if os.Getenv("SPLICEFLEET_TEST_UDP") == "1" {
		os.Exit(udpTool(os.Args[1:]))
	}
	if os.Getenv("SPLICEFLEET_TEST_AS_CLI") == "1" {
		e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now}
		if at := os.Getenv("SPLICEFLEET_TEST_KILL_AT"); at != "" {
			e.stepHook = func(step string) {
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
