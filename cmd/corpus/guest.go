package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/splicefleet/splicefleet/corpus"
	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/lab"
)

// guestModule and guestID name every bundle the corpus makes: each guest
// is fresh, so one name serves all units.
const (
	guestModule = "lp_corpus_unit"
	guestID     = "corpus-unit"
)

// Taint bits loading a livepatch module sets by design: livepatch (K),
// out-of-tree (O), unsigned (E). Any other new bit fails the check.
const allowedTaint = 1<<15 | 1<<12 | 1<<13

// guestScript applies the bundle, waits for the transition, runs a short
// workload, and undoes it, marking what the check reads.
const guestScript = `
mkdir -p /var/lib/splicefleet
sf() { splicefleet "$@" --kernel linux --state-dir /var/lib/splicefleet --keyring /lab/keys/trusted.asc 2>&1; }
lp=/sys/kernel/livepatch/` + guestModule + `
mark taint-before "$(cat /proc/sys/kernel/tainted)"
dmesg -c >/dev/null 2>&1
sf apply /lab/unit.splice >/tmp/apply.out; code=$?
mark apply-exit $code
mark apply-out "$(tr '\n' '|' </tmp/apply.out | cut -c1-400)"
[ $code = 0 ] || { mark apply-log "$(dmesg | tail -4 | tr '\n' '|' | cut -c1-400)"; exit 0; }
i=0; while [ $i -lt 60 ] && [ "$(cat $lp/transition 2>/dev/null)" != 0 ]; do sleep 1; i=$((i+1)); done
mark transition "$(cat $lp/transition 2>/dev/null)"
mark enabled "$(cat $lp/enabled 2>/dev/null)"
# A short, generic workload: files, processes, memory, sysfs, procfs.
n=0
while [ $n -lt 3 ]; do
	find / -xdev -type f 2>/dev/null | head -500 | while read f; do cat "$f" >/dev/null 2>&1; done
	cat /proc/[0-9]*/stat /proc/[0-9]*/maps >/dev/null 2>&1
	dd if=/dev/urandom of=/tmp/w bs=64k count=32 2>/dev/null && md5sum /tmp/w >/dev/null && rm -f /tmp/w
	ls -R /sys/kernel /sys/module >/dev/null 2>&1
	(sleep 0.2 & wait) 2>/dev/null
	n=$((n+1))
done
mark workload done
mark taint-after "$(cat /proc/sys/kernel/tainted)"
mark oops "$(dmesg | grep -E 'Oops|WARNING:|BUG:|Call Trace|general protection' | head -3 | tr '\n' '|')"
splicefleet undo ` + guestID + ` --kernel linux --state-dir /var/lib/splicefleet >/tmp/undo.out 2>&1; code=$?
mark undo-exit $code
mark undo-out "$(tr '\n' '|' </tmp/undo.out | cut -c1-400)"
mark after-undo "$(ls /sys/kernel/livepatch 2>/dev/null | tr '\n' ' ')"
`

// guestCheck boots a guest of kernel k with the bundle and the unit's
// modules loaded, and judges it. It returns "" when the bundle passed, or
// the first check that failed; an error means the guest did not finish.
//
// A module that refuses a guest without the device or firmware it drives
// (insmod: No such device) is given a second guest booted under UEFI
// firmware: efivarfs, for one, loads only where EFI runtime services
// are. A module that refuses that guest too cannot be checked in the
// lab (a Xen driver outside Xen).
func guestCheck(ctx context.Context, k *lab.DebianKernel, bin string, bundle, trusted []byte, modules []string) (string, time.Duration, error) {
	boot := func(uefi bool) (*lab.Result, error) {
		return lab.Boot(ctx, lab.Guest{
			Name:    "corpus",
			Kernel:  k,
			Memory:  768,
			Timeout: 6 * time.Minute,
			UEFI:    uefi,
			Initramfs: lab.Initramfs{
				Script:      guestScript,
				Splicefleet: bin,
				Modules:     modules,
				Files: []lab.File{
					{Path: "lab/unit.splice", Data: bundle, Mode: 0o644},
					{Path: "lab/keys/trusted.asc", Data: trusted, Mode: 0o644},
				},
			},
		})
	}
	var wall time.Duration
	uefi := false
	for {
		res, err := boot(uefi)
		if res != nil {
			wall += res.Wall
		}
		if err != nil {
			return "", wall, err
		}
		if res.ExitCode == lab.ExitInitModule {
			why := moduleLoadFailure(res.Console)
			if !uefi && strings.Contains(why, "No such device") {
				uefi = true
				continue
			}
			if uefi {
				why += ", under the default BIOS and under UEFI"
			}
			return why, wall, nil
		}
		return judge(res.Marks.Map(), res.ExitCode), wall, nil
	}
}

// moduleLoadFailure is the reason of a guest whose /init could not load
// one of the unit's modules, so that nothing was checked: the module and
// insmod's words, e.g. a Xen driver refusing a guest that is not on Xen
// ("No such device"). Such a module cannot be checked in the lab.
func moduleLoadFailure(console string) string {
	var insmod, init string
	for _, l := range strings.Split(console, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "insmod: ") {
			insmod = l
		}
		if m, ok := strings.CutPrefix(l, "lab-init: "); ok {
			init = m
		}
	}
	why := "the guest could not load a module of the unit, so nothing was checked"
	if init != "" {
		why += ": " + init
	}
	if insmod != "" {
		why += " (" + insmod + ")"
	}
	return why
}

// judge reads a guest's marks; "" is a pass.
func judge(m map[string]string, exit int) string {
	if exit != 0 {
		return fmt.Sprintf("guest script exit %d", exit)
	}
	if m["apply-exit"] != "0" {
		why := "apply failed: " + m["apply-out"]
		if l := strings.TrimSpace(m["apply-log"]); l != "" {
			why += " kernel log: " + l
		}
		return why
	}
	if m["transition"] != "0" {
		return "the livepatch transition did not finish in 60s"
	}
	if m["enabled"] != "1" {
		return "not enabled in sysfs after apply"
	}
	if m["workload"] != "done" {
		return "the workload did not finish"
	}
	if o := strings.TrimSpace(m["oops"]); o != "" {
		return "kernel log: " + o
	}
	before, err1 := strconv.ParseUint(strings.TrimSpace(m["taint-before"]), 10, 64)
	after, err2 := strconv.ParseUint(strings.TrimSpace(m["taint-after"]), 10, 64)
	if err1 != nil || err2 != nil {
		return "taint unreadable"
	}
	if added := after &^ before &^ allowedTaint; added != 0 {
		return fmt.Sprintf("new taint %#x (before %#x, after %#x)", added, before, after)
	}
	if m["undo-exit"] != "0" {
		return "undo failed: " + m["undo-out"]
	}
	if strings.TrimSpace(m["after-undo"]) != "" {
		return "a livepatch is still loaded after undo: " + m["after-undo"]
	}
	return ""
}

// modulesFor lists what a guest loads for a unit built into modules: each
// module after its dependencies, built-in ones skipped by the lab. The
// dependencies are read from each module's own modinfo ("depends"), as
// depmod does: the unpacked package has no modules.dep, which depmod
// writes when the package is installed.
func modulesFor(k *lab.DebianKernel, objects []string) ([]string, error) {
	var mods []string
	for _, o := range objects {
		if o != corpus.Vmlinux {
			mods = append(mods, o)
		}
	}
	if len(mods) == 0 {
		return nil, nil
	}
	files := map[string]string{}
	err := filepath.WalkDir(filepath.Join(k.ModulesDir, "kernel"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".ko") {
			files[modName(path)] = path
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("the kernel's modules: %w", err)
	}
	var out []string
	seen := map[string]bool{}
	var visit func(string) error
	visit = func(m string) error {
		if seen[m] {
			return nil
		}
		seen[m] = true
		path, ok := files[m]
		if !ok {
			return nil // built in: the lab skips it
		}
		ko, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := kmod.ReadModInfo(ko)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, d := range info.Depends {
			if err := visit(strings.ReplaceAll(d, "-", "_")); err != nil {
				return err
			}
		}
		out = append(out, m)
		return nil
	}
	for _, m := range mods {
		if err := visit(m); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func modName(p string) string {
	base := filepath.Base(p)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}
