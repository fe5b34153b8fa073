package lab

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// guestLog streams a guest's console to t.Log, so `go test -v` and
// `make lab` show progress.
func guestLog(t *testing.T) io.Writer { return testutil.LogWriter(t) }

// TestScenarioSmoke boots the real kernel with the static splicefleet
// inside and checks that splicefleet sees a real kernel with livepatch.
func TestScenarioSmoke(t *testing.T) {
	note := scenario(t)
	k := fetchKernel(t)
	bin := splicefleetBinary(t)
	res, err := Boot(context.Background(), Guest{
		Name:   "smoke",
		Kernel: k,
		Log:    guestLog(t),
		Initramfs: Initramfs{
			Splicefleet: bin,
			Script: `set -e
mark release "$(uname -r)"
mark version "$(splicefleet version)"
mkdir -p /var/lib/splicefleet
splicefleet view --kernel linux --state-dir /var/lib/splicefleet > /tmp/view
cat /tmp/view
mark view "$(head -n 1 /tmp/view)"
mark livepatch-sysfs "$(test -d /sys/kernel/livepatch && echo yes || echo no)"
`,
		},
	})
	if res != nil {
		*note = bootTimes(res)
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("script exit %d; console tail:\n%s", res.ExitCode, res.ConsoleTail(20))
	}
	m := res.Marks
	if got, _ := m.Get("release"); got != k.Release {
		t.Errorf("uname -r = %q, want %q", got, k.Release)
	}
	if got, _ := m.Get("version"); !strings.HasPrefix(got, "splicefleet lab") {
		t.Errorf("splicefleet version = %q", got)
	}
	view, _ := m.Get("view")
	if !strings.HasPrefix(view, "kernel "+k.Release+" ") || !strings.Contains(view, "livepatch supported") {
		t.Errorf("view = %q, want the real kernel %s with livepatch supported", view, k.Release)
	}
	if strings.Contains(view, "SIMULATED") {
		t.Errorf("view = %q: a simulated kernel", view)
	}
	if got, _ := m.Get("livepatch-sysfs"); got != "yes" {
		t.Errorf("/sys/kernel/livepatch present = %q", got)
	}
	t.Logf("kernel %s: user space at %.2fs guest uptime, %.1fs wall", k.Release, res.BootToUser.Seconds(), res.Wall.Seconds())
}

// TestScenarioNetwork boots two guests on one segment: the first serves
// a TCP echo with nc, the second pings it and talks to it.
func TestScenarioNetwork(t *testing.T) {
	note := scenario(t)
	k := fetchKernel(t)
	server := Guest{
		Name: "server", Kernel: k, Log: guestLog(t),
		Net: &Net{Addr: "10.0.0.1/24"},
		Initramfs: Initramfs{Script: `
mark eth0 "$(ip -o -4 addr show dev eth0 | awk '{print $4}')"
# Answer one connection: read a line, send it back upper-cased.
nc -l -p 7000 -e sh -c 'read l; echo "$l" | tr a-z A-Z' &
pid=$!
# Wait up to 60 s for the client to finish, then stop.
i=0; while kill -0 $pid 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
kill $pid 2>/dev/null
mark served "$([ $i -lt 600 ] && echo yes || echo no)"
`},
	}
	client := Guest{
		Name: "client", Kernel: k, Log: guestLog(t),
		Net: &Net{Addr: "10.0.0.2/24"},
		Initramfs: Initramfs{Script: `
# The server may still be booting: retry for up to 60 s.
i=0; until ping -c 1 -W 1 10.0.0.1 >/dev/null 2>&1; do i=$((i+1)); [ $i -ge 60 ] && break; done
mark ping "$(ping -c 3 -W 2 10.0.0.1 | grep -o '[0-9]* packets received')"
i=0; until reply=$(echo hello lab | nc -w 5 10.0.0.1 7000) && [ -n "$reply" ]; do i=$((i+1)); [ $i -ge 30 ] && break; sleep 1; done
mark echo "$reply"
`},
	}
	res, err := BootAll(context.Background(), []Guest{server, client})
	*note = bootTimes(res...)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := res[0].Marks.Get("eth0"); got != "10.0.0.1/24" {
		t.Errorf("server eth0 = %q", got)
	}
	if got, _ := res[1].Marks.Get("ping"); got != "3 packets received" {
		t.Errorf("client ping: %q, want 3 packets received", got)
	}
	if got, _ := res[1].Marks.Get("echo"); got != "HELLO LAB" {
		t.Errorf("client echo reply = %q, want HELLO LAB", got)
	}
	if got, _ := res[0].Marks.Get("served"); got != "yes" {
		t.Errorf("server served = %q", got)
	}
}

// TestBootTimeoutKillsGuest proves a hung guest is killed at its timeout
// and leaves no QEMU process behind.
func TestBootTimeoutKillsGuest(t *testing.T) {
	note := scenario(t)
	k := fetchKernel(t)
	const timeout = 20 * time.Second
	start := time.Now()
	var pids []int
	stop := make(chan struct{})
	done := make(chan struct{})
	// Watch for the guest's QEMU while it runs.
	go func() {
		defer close(done)
		for {
			for _, p := range qemuPids(t, k.Vmlinuz) {
				if !containsInt(pids, p) {
					pids = append(pids, p)
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	res, err := Boot(context.Background(), Guest{
		Name: "hang", Kernel: k, Log: guestLog(t), Timeout: timeout,
		Initramfs: Initramfs{Script: "mark hanging now\nwhile :; do sleep 1; done\n"},
	})
	close(stop)
	<-done
	elapsed := time.Since(start)
	*note = "killed after " + strconv.FormatFloat(elapsed.Seconds(), 'f', 1, 64) + "s"
	if !errors.Is(err, ErrUnfinished) || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if got, _ := res.Marks.Get("hanging"); got != "now" {
		t.Errorf("the script did not start: marks %v", res.Marks)
	}
	if elapsed < timeout || elapsed > timeout+10*time.Second {
		t.Errorf("Boot returned after %v, want about %v", elapsed, timeout)
	}
	if len(pids) == 0 {
		t.Fatal("never saw the guest's qemu process")
	}
	for _, p := range pids {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(p))); err == nil {
			t.Errorf("qemu pid %d is still there", p)
		}
	}
}

// TestBootCanceledContextKillsGuest: a canceled context ends the guest
// at once, with no QEMU process left.
func TestBootCanceledContextKillsGuest(t *testing.T) {
	scenario(t)
	k := fetchKernel(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(3*time.Second, cancel)
	res, err := Boot(ctx, Guest{
		Name: "cancel", Kernel: k, Log: guestLog(t),
		Initramfs: Initramfs{Script: "while :; do sleep 1; done\n"},
	})
	if !errors.Is(err, ErrUnfinished) || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("err = %v, want canceled", err)
	}
	if res.Wall > 15*time.Second {
		t.Errorf("cancel took %v", res.Wall)
	}
	if p := qemuPids(t, k.Vmlinuz); len(p) > 0 {
		t.Errorf("qemu processes left: %v", p)
	}
}

// qemuPids lists QEMU processes of this test binary's guests (by the
// kernel path on their command line and this process as their parent).
func qemuPids(t *testing.T, vmlinuz string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	me := strconv.Itoa(os.Getpid())
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), Qemu) || !strings.Contains(string(cmdline), vmlinuz) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Field 4 of stat, after the parenthesised command name.
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
			f := strings.Fields(string(stat)[i+1:])
			if len(f) > 1 && f[1] == me {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestBootDiskAndAppend attaches a raw disk as virtio-blk and adds to
// the kernel command line.
func TestBootDiskAndAppend(t *testing.T) {
	note := scenario(t)
	k := fetchKernel(t)
	disk := filepath.Join(t.TempDir(), "disk.img")
	img := make([]byte, 1<<20)
	copy(img, "splicefleet-lab-disk")
	if err := os.WriteFile(disk, img, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Boot(context.Background(), Guest{
		Name: "disk", Kernel: k, Log: guestLog(t),
		Disk: disk, Append: "splicefleet.lab=1", CPUs: 2, Memory: 384,
		Initramfs: Initramfs{
			Modules: DiskModules,
			Script: `mark disk "$(head -c 20 /dev/vda)"
mark cmdline "$(cat /proc/cmdline)"
mark cpus "$(grep -c ^processor /proc/cpuinfo)"
printf written > /dev/vda
`,
		},
	})
	if res != nil {
		*note = bootTimes(res)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := res.Marks.Get("disk"); got != "splicefleet-lab-disk" {
		t.Errorf("disk reads %q", got)
	}
	if got, _ := res.Marks.Get("cmdline"); !strings.Contains(got, "splicefleet.lab=1") || !strings.Contains(got, "console=ttyS0") {
		t.Errorf("cmdline = %q", got)
	}
	if got, _ := res.Marks.Get("cpus"); got != "2" {
		t.Errorf("cpus = %q, want 2", got)
	}
	b, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("written")) {
		t.Errorf("the guest's write did not reach the image: %q", b[:20])
	}
}

// TestBootUEFI boots the kernel under OVMF through its EFI stub: the
// guest has EFI runtime services, and efivarfs, which refuses to load
// without them (No such device), loads and mounts. Under the default
// BIOS, /init cannot load it.
func TestBootUEFI(t *testing.T) {
	note := scenario(t)
	k := fetchKernel(t)
	guest := func(uefi bool) *Result {
		res, err := Boot(context.Background(), Guest{
			Name: "uefi", Kernel: k, Log: guestLog(t), UEFI: uefi,
			Initramfs: Initramfs{Modules: []string{"efivarfs"}, Script: `mark efi "$(test -d /sys/firmware/efi && echo yes || echo no)"
mkdir -p /mnt/efivars
mark mount "$(mount -t efivarfs efivarfs /mnt/efivars 2>&1 && echo mounted)"
`},
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := guest(true)
	*note = bootTimes(res)
	if res.ExitCode != 0 {
		t.Fatalf("under UEFI: exit %d; console tail:\n%s", res.ExitCode, res.ConsoleTail(15))
	}
	for key, want := range map[string]string{"efi": "yes", "mount": "mounted"} {
		if got, _ := res.Marks.Get(key); got != want {
			t.Errorf("under UEFI, %s = %q, want %q", key, got, want)
		}
	}
	t.Logf("under UEFI: user space at %.2fs guest uptime, %.1fs wall", res.BootToUser.Seconds(), res.Wall.Seconds())
	res = guest(false)
	if res.ExitCode != ExitInitModule || !strings.Contains(res.Console, "No such device") {
		t.Errorf("under the default BIOS: exit %d, want %d (efivarfs: No such device); console tail:\n%s", res.ExitCode, ExitInitModule, res.ConsoleTail(10))
	}
	t.Logf("under BIOS: %.1fs wall", res.Wall.Seconds())
}
