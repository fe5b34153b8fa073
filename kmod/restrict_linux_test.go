//go:build linux

package kmod

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The child half of TestExecLimited, run in a process of its own.
const limitEnv = "KMOD_TEST_LIMIT_PRIVILEGES"

func init() {
	switch os.Getenv(limitEnv) {
	case "limit":
		// Execute this test binary again, limited, as systemd executes a
		// unit's program: the bounding set bites at the exec.
		if err := os.Setenv(limitEnv, "report"); err != nil {
			os.Exit(3)
		}
		err := ExecLimited(os.Args[0], os.Args, os.Environ(), CapSysModule)
		fmt.Println("exec limited:", err)
		os.Exit(3)
	case "report":
		fs, _ := NewFS("/")
		c, err := fs.EffectiveCapabilities()
		status, _ := os.ReadFile("/proc/self/status")
		nnp := ""
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "NoNewPrivs:"); ok {
				nnp = strings.TrimSpace(v)
			}
		}
		// A livepatch folder the sandbox may not write: root without
		// CAP_DAC_OVERRIDE is refused a folder of mode 0555.
		root := os.Getenv(limitEnv + "_ROOT")
		access := "ok"
		if err := (FS{root: root}).CheckKernelAccess(); err != nil {
			access = err.Error()
		}
		fmt.Printf("capeff=%016x err=%v nnp=%s access=%s\n", uint64(c), err, nnp, access)
		os.Exit(0)
	}
}

// TestExecLimited runs a program the way the lab runs the agent where
// there is no systemd: as root, with the bounding set cut to
// CAP_SYS_MODULE and no_new_privs set. The program holds CAP_SYS_MODULE
// and nothing else, passes the capability check, and is refused a
// livepatch folder it may not write.
func TestExecLimited(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, as the agent does; CI runs the tests as root")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "dev", "kmsg"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	lp := filepath.Join(root, "sys", "kernel", "livepatch")
	if err := os.MkdirAll(lp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(lp, 0o555); err != nil {
		t.Fatal(err)
	}
	// As root with every capability, the same folder passes.
	if err := (FS{root: root}).CheckKernelAccess(); err != nil {
		t.Fatalf("with every capability: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), limitEnv+"=limit", limitEnv+"_ROOT="+root)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := string(out)
	if !strings.Contains(got, fmt.Sprintf("capeff=%016x err=<nil>", uint64(1)<<CapSysModule)) || !strings.Contains(got, "nnp=1") {
		t.Errorf("the limited program holds more or less than CAP_SYS_MODULE, or lacks no_new_privs: %s", got)
	}
	if !strings.Contains(got, "access=write the livepatch interface: access for writing "+lp+": permission denied") {
		t.Errorf("the limited program was not refused a livepatch folder it may not write: %s", got)
	}
}

func TestCheckKernelAccessNeedsTheKernelLog(t *testing.T) {
	root := t.TempDir()
	err := (FS{root: root}).CheckKernelAccess()
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "read the kernel log") {
		t.Errorf("no dev/kmsg: %v", err)
	}
}
