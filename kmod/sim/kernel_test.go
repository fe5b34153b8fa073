package sim

import (
	"context"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/kmod"
)

// fast are timeouts for stalled transitions in tests.
var fast = kmod.Timeouts{Stall: 20 * time.Millisecond, AfterSignal: 20 * time.Millisecond, Poll: 2 * time.Millisecond}

func openKernel(t *testing.T) (*Kernel, string) {
	t.Helper()
	dir := t.TempDir()
	k, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return k, dir
}

// livepatch describes a livepatch module named name.
func livepatch(name string) fakemodule.Options {
	return fakemodule.Options{Name: name, Livepatch: true, Functions: []string{"cmdline_proc_show"}}
}

// moduleFile writes the module o to a file and opens it.
func moduleFile(t *testing.T, o fakemodule.Options) *os.File {
	t.Helper()
	return bytesFile(t, fakemodule.Build(o))
}

func bytesFile(t *testing.T, data []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "module.ko")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func load(t *testing.T, k *Kernel, name string, replace bool) {
	t.Helper()
	if err := k.Load(context.Background(), moduleFile(t, livepatch(name)), kmod.LoadSpec{Name: name, Replace: replace}); err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
}

func setFaults(t *testing.T, dir string, f Faults) {
	t.Helper()
	if err := SetFaults(dir, f); err != nil {
		t.Fatal(err)
	}
}

func patches(t *testing.T, k *Kernel) []kmod.Livepatch {
	t.Helper()
	lps, err := k.Livepatches()
	if err != nil {
		t.Fatal(err)
	}
	return lps
}

func patchNames(t *testing.T, k *Kernel) []string {
	t.Helper()
	var names []string
	for _, p := range patches(t, k) {
		names = append(names, p.Name)
	}
	return names
}

func moduleNames(t *testing.T, k *Kernel) []string {
	t.Helper()
	mods, err := k.Modules()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.Name)
	}
	return names
}

func logMessages(t *testing.T, k *Kernel) []string {
	t.Helper()
	recs, _, err := k.Log(0)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, r := range recs {
		msgs = append(msgs, r.Message)
	}
	return msgs
}

func wantLog(t *testing.T, k *Kernel, msg string) {
	t.Helper()
	if msgs := logMessages(t, k); !slices.Contains(msgs, msg) {
		t.Errorf("log lacks %q; log:\n%s", msg, strings.Join(msgs, "\n"))
	}
}

func taint(t *testing.T, k *Kernel) kmod.Taint {
	t.Helper()
	tt, err := k.Taint()
	if err != nil {
		t.Fatal(err)
	}
	return tt
}

func ptr[T any](v T) *T { return &v }

func enabled(name string, order int, replace bool) kmod.Livepatch {
	return kmod.Livepatch{
		Name: name, Enabled: true, Replace: ptr(replace), StackOrder: order,
		Objects: []kmod.LivepatchObject{{Name: "vmlinux", Patched: true}},
	}
}

func TestIdentity(t *testing.T) {
	k, _ := openKernel(t)
	id, err := k.Identity()
	if err != nil {
		t.Fatal(err)
	}
	if id.Release != DefaultRelease || id.Arch != DefaultArch || !id.Livepatch || !id.Simulated || len(id.BuildID) != 40 {
		t.Errorf("Identity() = %+v", id)
	}
	if s := k.String(); !strings.HasPrefix(s, "SIMULATED kernel ") {
		t.Errorf("String() = %q, want it to start with SIMULATED kernel", s)
	}
	status, err := k.Status()
	if err != nil || !strings.HasPrefix(status, "SIMULATED kernel ") {
		t.Errorf("Status() = %q, %v", status, err)
	}
}

func TestInitIdentity(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, Config{Release: "6.12.0-1-cloud-amd64", Arch: "aarch64", BuildID: "abcd"}); err != nil {
		t.Fatal(err)
	}
	k, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := k.Identity()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).MatchString(id.BootID) {
		t.Errorf("boot id %q is not in the kernel's format", id.BootID)
	}
	want := kmod.Identity{Release: "6.12.0-1-cloud-amd64", Arch: "aarch64", BuildID: "abcd", BootID: id.BootID, Livepatch: true, Simulated: true}
	if diff := cmp.Diff(want, id); diff != "" {
		t.Errorf("Identity() (-want +got):\n%s", diff)
	}
	if err := Init(t.TempDir(), Config{BuildID: "not hex"}); err == nil {
		t.Error("Init with a non-hex build id succeeded")
	}
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	k, _ := openKernel(t)
	load(t, k, "livepatch_a", false)

	if diff := cmp.Diff([]kmod.Livepatch{enabled("livepatch_a", 1, false)}, patches(t, k)); diff != "" {
		t.Errorf("Livepatches() after load (-want +got):\n%s", diff)
	}
	mods, err := k.Modules()
	if err != nil {
		t.Fatal(err)
	}
	if len(mods) != 1 || mods[0].Name != "livepatch_a" || mods[0].State != "Live" || mods[0].Refs != 1 || mods[0].Taints != "(OEK)" || mods[0].Size <= 0 {
		t.Errorf("Modules() = %+v", mods)
	}
	if got := taint(t, k); got != 45056 || got&kmod.TaintLivepatch == 0 {
		t.Errorf("Taint() = %d, want 45056", got)
	}
	wantLog(t, k, "livepatch: enabling patch 'livepatch_a'")
	wantLog(t, k, "livepatch: 'livepatch_a': patching complete")
	if err := k.WaitTransition(ctx, "livepatch_a", fast); err != nil {
		t.Errorf("WaitTransition: %v", err)
	}

	// The kernel holds an enabled livepatch module.
	if err := k.Unload(ctx, "livepatch_a"); !errors.Is(err, kmod.ErrBusy) {
		t.Errorf("Unload while enabled: %v, want ErrBusy", err)
	}
	if got := moduleNames(t, k); !slices.Equal(got, []string{"livepatch_a"}) {
		t.Errorf("modules after refused unload = %v", got)
	}

	if err := k.Disable(ctx, "livepatch_a"); err != nil {
		t.Fatal(err)
	}
	if err := k.WaitTransition(ctx, "livepatch_a", fast); err != nil {
		t.Errorf("WaitTransition after disable: %v", err)
	}
	// A disabled patch leaves /sys/kernel/livepatch; its module stays.
	if got := patches(t, k); len(got) != 0 {
		t.Errorf("Livepatches() after disable = %+v, want none", got)
	}
	mods, _ = k.Modules()
	if len(mods) != 1 || mods[0].Refs != 0 {
		t.Errorf("Modules() after disable = %+v, want livepatch_a with no refs", mods)
	}
	wantLog(t, k, "livepatch: 'livepatch_a': unpatching complete")
	if err := k.Disable(ctx, "livepatch_a"); !errors.Is(err, kmod.ErrNoSuchPatch) {
		t.Errorf("Disable of a disabled patch: %v, want ErrNoSuchPatch", err)
	}

	if err := k.Unload(ctx, "livepatch_a"); err != nil {
		t.Fatal(err)
	}
	if got := moduleNames(t, k); len(got) != 0 {
		t.Errorf("modules after unload = %v", got)
	}
	if got := taint(t, k); got != 45056 {
		t.Errorf("taint after unload = %d, want 45056 (taint is sticky)", got)
	}

	// Unknown names.
	if err := k.Unload(ctx, "livepatch_a"); !errors.Is(err, kmod.ErrNotLoaded) {
		t.Errorf("second Unload: %v, want ErrNotLoaded", err)
	}
	if err := k.Disable(ctx, "nope"); !errors.Is(err, kmod.ErrNoSuchPatch) {
		t.Errorf("Disable(nope): %v, want ErrNoSuchPatch", err)
	}
	if err := k.WaitTransition(ctx, "nope", fast); !errors.Is(err, kmod.ErrNoSuchPatch) {
		t.Errorf("WaitTransition(nope): %v, want ErrNoSuchPatch", err)
	}
	// The module can be loaded again.
	load(t, k, "livepatch_a", false)
}

func TestTimedTransitions(t *testing.T) {
	ctx := context.Background()
	k, dir := openKernel(t)
	const d = 300 * time.Millisecond
	setFaults(t, dir, Faults{AnyModule: {TransitionMillis: int(d / time.Millisecond)}})

	start := time.Now()
	load(t, k, "livepatch_a", false)
	lps := patches(t, k)
	if len(lps) != 1 || !lps[0].Enabled || !lps[0].Transition || !lps[0].Objects[0].Patched {
		t.Fatalf("Livepatches() during enable = %+v, want enabled in transition", lps)
	}
	// One transition at a time: the kernel refuses to enable another.
	if err := k.Load(ctx, moduleFile(t, livepatch("livepatch_b")), kmod.LoadSpec{Name: "livepatch_b"}); !errors.Is(err, kmod.ErrBusy) {
		t.Errorf("Load during a transition: %v, want ErrBusy", err)
	}
	if err := k.WaitTransition(ctx, "livepatch_a", kmod.Timeouts{Poll: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < d {
		t.Errorf("enable transition took %s, want at least %s", el, d)
	}
	if lps := patches(t, k); lps[0].Transition {
		t.Errorf("still in transition after WaitTransition: %+v", lps)
	}
	wantLog(t, k, "livepatch: 'livepatch_a': patching complete")

	start = time.Now()
	if err := k.Disable(ctx, "livepatch_a"); err != nil {
		t.Fatal(err)
	}
	lps = patches(t, k)
	if len(lps) != 1 || lps[0].Enabled || !lps[0].Transition || !lps[0].Objects[0].Patched {
		t.Fatalf("Livepatches() during disable = %+v, want disabled in transition, still patched", lps)
	}
	// Disabling again while it is being disabled is a no-op.
	if err := k.Disable(ctx, "livepatch_a"); err != nil {
		t.Errorf("second Disable during the transition: %v", err)
	}
	// Unload retries EBUSY a few times, which is not long enough here.
	if err := k.Unload(ctx, "livepatch_a"); !errors.Is(err, kmod.ErrBusy) {
		t.Errorf("Unload during the disable transition: %v, want ErrBusy", err)
	}
	if err := k.WaitTransition(ctx, "livepatch_a", kmod.Timeouts{Poll: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < d {
		t.Errorf("disable transition took %s, want at least %s", el, d)
	}
	if got := patches(t, k); len(got) != 0 {
		t.Errorf("Livepatches() after disable = %+v", got)
	}
	if err := k.Unload(ctx, "livepatch_a"); err != nil {
		t.Fatal(err)
	}
}

func TestDisableDuringEnableReverses(t *testing.T) {
	ctx := context.Background()
	k, dir := openKernel(t)
	setFaults(t, dir, Faults{AnyModule: {Never: true}})
	load(t, k, "livepatch_a", false)
	if err := k.Disable(ctx, "livepatch_a"); err != nil {
		t.Fatal(err)
	}
	if got := patches(t, k); len(got) != 0 {
		t.Errorf("Livepatches() after reversing = %+v", got)
	}
	wantLog(t, k, "livepatch: 'livepatch_a': reversing transition from patching")
	if err := k.Unload(ctx, "livepatch_a"); err != nil {
		t.Fatal(err)
	}
}

func TestStackOrder(t *testing.T) {
	ctx := context.Background()
	k, _ := openKernel(t)
	for _, name := range []string{"lp_a", "lp_b", "lp_c"} {
		load(t, k, name, false)
	}
	want := []kmod.Livepatch{enabled("lp_a", 1, false), enabled("lp_b", 2, false), enabled("lp_c", 3, false)}
	if diff := cmp.Diff(want, patches(t, k)); diff != "" {
		t.Errorf("Livepatches() (-want +got):\n%s", diff)
	}
	// Any patch may be disabled; the ones above move down the stack.
	if err := k.Disable(ctx, "lp_b"); err != nil {
		t.Fatal(err)
	}
	want = []kmod.Livepatch{enabled("lp_a", 1, false), enabled("lp_c", 2, false)}
	if diff := cmp.Diff(want, patches(t, k)); diff != "" {
		t.Errorf("Livepatches() after disabling lp_b (-want +got):\n%s", diff)
	}
	load(t, k, "lp_d", false)
	if got := patchNames(t, k); !slices.Equal(got, []string{"lp_a", "lp_c", "lp_d"}) {
		t.Errorf("patches = %v", got)
	}
}

func TestAtomicReplace(t *testing.T) {
	ctx := context.Background()
	k, dir := openKernel(t)
	load(t, k, "lp_a", false)
	load(t, k, "lp_b", false)

	// While the replacing patch is in transition, the old ones still work.
	setFaults(t, dir, Faults{"lp_r": {TransitionMillis: 60_000, CompleteOnSignal: true}})
	load(t, k, "lp_r", true)
	lps := patches(t, k)
	if got := patchNames(t, k); !slices.Equal(got, []string{"lp_a", "lp_b", "lp_r"}) || !lps[0].Enabled || !lps[1].Enabled || !lps[2].Transition {
		t.Fatalf("Livepatches() during replace = %+v", lps)
	}
	if err := k.WaitTransition(ctx, "lp_r", fast); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]kmod.Livepatch{enabled("lp_r", 1, true)}, patches(t, k)); diff != "" {
		t.Errorf("Livepatches() after replace (-want +got):\n%s", diff)
	}
	// The replaced modules stay loaded, no longer held, until unloaded.
	mods, err := k.Modules()
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]int{}
	for _, m := range mods {
		refs[m.Name] = m.Refs
	}
	if diff := cmp.Diff(map[string]int{"lp_a": 0, "lp_b": 0, "lp_r": 1}, refs); diff != "" {
		t.Errorf("module refs (-want +got):\n%s", diff)
	}
	for _, name := range []string{"lp_a", "lp_b"} {
		if err := k.Unload(ctx, name); err != nil {
			t.Errorf("unload replaced %s: %v", name, err)
		}
	}
	if err := k.Unload(ctx, "lp_r"); !errors.Is(err, kmod.ErrBusy) {
		t.Errorf("unload of the replacing patch: %v, want ErrBusy", err)
	}

	// A patch loaded on top of a replace patch is not replaced when that
	// one's disabling is reversed.
	load(t, k, "lp_c", false)
	setFaults(t, dir, Faults{AnyModule: {Never: true}})
	if err := k.Disable(ctx, "lp_r"); err != nil {
		t.Fatal(err)
	}
	var te *kmod.TransitionError
	if err := k.WaitTransition(ctx, "lp_r", fast); !errors.As(err, &te) {
		t.Fatalf("WaitTransition: %v, want a TransitionError", err)
	}
	if got := patchNames(t, k); !slices.Equal(got, []string{"lp_r", "lp_c"}) {
		t.Errorf("patches after the reversed disable = %v, want [lp_r lp_c]", got)
	}
}

func TestUnloadBusyFault(t *testing.T) {
	ctx := context.Background()
	k, dir := openKernel(t)
	load(t, k, "lp_a", false)
	if err := k.Disable(ctx, "lp_a"); err != nil {
		t.Fatal(err)
	}

	// Fewer failures than Unload's attempts: it retries through them.
	setFaults(t, dir, Faults{"lp_a": {UnloadBusy: UnloadAttempts - 1}})
	if err := k.Unload(ctx, "lp_a"); err != nil {
		t.Fatalf("Unload with %d EBUSY: %v", UnloadAttempts-1, err)
	}

	// More failures: the first Unload gives up, the state is unchanged,
	// and the next one gets through.
	load(t, k, "lp_b", false)
	if err := k.Disable(ctx, "lp_b"); err != nil {
		t.Fatal(err)
	}
	setFaults(t, dir, Faults{AnyModule: {UnloadBusy: UnloadAttempts + 2}})
	before := logMessages(t, k)
	if err := k.Unload(ctx, "lp_b"); !errors.Is(err, kmod.ErrBusy) {
		t.Fatalf("Unload with %d EBUSY: %v, want ErrBusy", UnloadAttempts+2, err)
	}
	if got := moduleNames(t, k); !slices.Equal(got, []string{"lp_b"}) {
		t.Errorf("modules after a failed unload = %v", got)
	}
	if diff := cmp.Diff(before, logMessages(t, k)); diff != "" {
		t.Errorf("log changed (-before +after):\n%s", diff)
	}
	if err := k.Unload(ctx, "lp_b"); err != nil {
		t.Errorf("second Unload: %v", err)
	}
}

func TestLoadFaults(t *testing.T) {
	for errno, want := range LoadErrnos {
		t.Run(errno, func(t *testing.T) {
			k, dir := openKernel(t)
			setFaults(t, dir, Faults{"lp_a": {LoadErrno: errno}})
			before := logMessages(t, k)
			err := k.Load(context.Background(), moduleFile(t, livepatch("lp_a")), kmod.LoadSpec{Name: "lp_a"})
			if !errors.Is(err, want) {
				t.Fatalf("Load: %v, want %v", err, want)
			}
			if got := moduleNames(t, k); len(got) != 0 {
				t.Errorf("modules = %v, want none", got)
			}
			if got := patches(t, k); len(got) != 0 {
				t.Errorf("livepatches = %v, want none", got)
			}
			if got := taint(t, k); got != 0 {
				t.Errorf("taint = %d, want 0", got)
			}
			if diff := cmp.Diff(before, logMessages(t, k)); diff != "" {
				t.Errorf("log changed (-before +after):\n%s", diff)
			}
			// The fault is for lp_a only.
			load(t, k, "lp_b", false)
		})
	}
}

func TestFaultDefaultAndOverride(t *testing.T) {
	k, dir := openKernel(t)
	setFaults(t, dir, Faults{AnyModule: {LoadErrno: "EPERM"}, "lp_ok": {}})
	if err := k.Load(context.Background(), moduleFile(t, livepatch("lp_a")), kmod.LoadSpec{Name: "lp_a"}); !errors.Is(err, kmod.ErrNotPermitted) {
		t.Errorf("Load under the * fault: %v, want ErrNotPermitted", err)
	}
	load(t, k, "lp_ok", false)
}

func TestSetFaultsValidates(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []Faults{
		{AnyModule: {LoadErrno: "EAGAIN"}},
		{AnyModule: {Oops: "panic"}},
		{"": {}},
		{"lp_a": {UnloadBusy: -1}},
	} {
		if err := SetFaults(dir, f); err == nil {
			t.Errorf("SetFaults(%+v) succeeded", f)
		}
	}
	// A hand-written file with an unknown key is refused, not ignored.
	if err := os.WriteFile(filepath.Join(dir, faultsFile), []byte(`{"*": {"load_erno": "EPERM"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFaults(dir); err == nil {
		t.Error("ReadFaults accepted an unknown key")
	}
	k, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Load(context.Background(), moduleFile(t, livepatch("lp_a")), kmod.LoadSpec{Name: "lp_a"}); err == nil {
		t.Error("Load succeeded with a malformed faults file")
	}
	if !k.HealthFault() {
		t.Error("HealthFault() = false with a malformed faults file, want true (fail closed)")
	}
}

func TestLoadRefusals(t *testing.T) {
	tests := []struct {
		name   string
		module []byte
		spec   kmod.LoadSpec
		want   []error
	}{
		{
			name:   "other release",
			module: fakemodule.Build(fakemodule.Options{Name: "lp_a", Livepatch: true, Vermagic: "6.1.0-57-cloud-amd64 SMP preempt mod_unload modversions "}),
			spec:   kmod.LoadSpec{Name: "lp_a"},
			want:   []error{kmod.ErrWrongKernel},
		},
		{
			name:   "other arch",
			module: fakemodule.Build(fakemodule.Options{Name: "lp_a", Livepatch: true, Machine: elf.EM_AARCH64}),
			spec:   kmod.LoadSpec{Name: "lp_a"},
			want:   []error{kmod.ErrWrongKernel},
		},
		{
			name:   "not a livepatch",
			module: fakemodule.Build(fakemodule.Options{Name: "plain"}),
			spec:   kmod.LoadSpec{Name: "plain"},
			want:   []error{kmod.ErrWrongKernel, kmod.ErrNotLivepatch},
		},
		{
			name:   "not elf",
			module: []byte("#!/bin/sh\necho not a module\n"),
			spec:   kmod.LoadSpec{Name: "lp_a"},
			want:   []error{kmod.ErrWrongKernel, kmod.ErrNotModule},
		},
		{
			name:   "empty",
			module: nil,
			spec:   kmod.LoadSpec{Name: "lp_a"},
			want:   []error{kmod.ErrWrongKernel, kmod.ErrNotModule},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, _ := openKernel(t)
			err := k.Load(context.Background(), bytesFile(t, tt.module), tt.spec)
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("Load: %v, want %v", err, want)
				}
			}
			if got := moduleNames(t, k); len(got) != 0 {
				t.Errorf("modules = %v, want none", got)
			}
			if got := taint(t, k); got != 0 {
				t.Errorf("taint = %d, want 0", got)
			}
		})
	}
}

func TestLoadAlreadyLoaded(t *testing.T) {
	ctx := context.Background()
	k, _ := openKernel(t)
	load(t, k, "lp_a", false)
	err := k.Load(ctx, moduleFile(t, livepatch("lp_a")), kmod.LoadSpec{Name: "lp_a"})
	if !errors.Is(err, kmod.ErrAlreadyLoaded) {
		t.Errorf("second Load: %v, want ErrAlreadyLoaded", err)
	}
	// Still so once the patch is disabled: the module is loaded.
	if err := k.Disable(ctx, "lp_a"); err != nil {
		t.Fatal(err)
	}
	err = k.Load(ctx, moduleFile(t, livepatch("lp_a")), kmod.LoadSpec{Name: "lp_a"})
	if !errors.Is(err, kmod.ErrAlreadyLoaded) {
		t.Errorf("Load of a disabled, loaded module: %v, want ErrAlreadyLoaded", err)
	}
}

func TestLoadSpecMismatch(t *testing.T) {
	k, _ := openKernel(t)
	err := k.Load(context.Background(), moduleFile(t, livepatch("lp_real")), kmod.LoadSpec{Name: "lp_verified"})
	if !errors.Is(err, kmod.ErrSpecMismatch) {
		t.Fatalf("Load: %v, want ErrSpecMismatch", err)
	}
	if got := moduleNames(t, k); len(got) != 0 {
		t.Errorf("modules = %v, want none (unloaded after the mismatch)", got)
	}
	if got := patches(t, k); len(got) != 0 {
		t.Errorf("livepatches = %v, want none", got)
	}
	wantLog(t, k, "livepatch: enabling patch 'lp_real'")
	wantLog(t, k, "livepatch: 'lp_real': unpatching complete")
}

func TestLoadReadsWholeFile(t *testing.T) {
	k, _ := openKernel(t)
	f := moduleFile(t, livepatch("lp_a"))
	if _, err := f.Seek(100, 0); err != nil {
		t.Fatal(err)
	}
	if err := k.Load(context.Background(), f, kmod.LoadSpec{Name: "lp_a"}); err != nil {
		t.Errorf("Load from a file not at offset 0: %v", err)
	}
}

func TestLoadCanceled(t *testing.T) {
	k, _ := openKernel(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := k.Load(ctx, moduleFile(t, livepatch("lp_a")), kmod.LoadSpec{Name: "lp_a"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Load: %v, want context.Canceled", err)
	}
	if got := moduleNames(t, k); len(got) != 0 {
		t.Errorf("modules = %v", got)
	}
}

func TestStalledEnable(t *testing.T) {
	ctx := context.Background()
	k, dir := openKernel(t)
	load(t, k, "lp_base", false)
	setFaults(t, dir, Faults{"lp_a": {Never: true}})
	load(t, k, "lp_a", true)

	start := time.Now()
	err := k.WaitTransition(ctx, "lp_a", fast)
	var te *kmod.TransitionError
	if !errors.As(err, &te) || !errors.Is(err, kmod.ErrTransitionStuck) {
		t.Fatalf("WaitTransition: %v, want a TransitionError", err)
	}
	want := &kmod.TransitionError{Patch: "lp_a", Enabling: true, Blockers: []kmod.Task{{PID: 4242, Comm: "stuck-task"}}, Reverted: true}
	if diff := cmp.Diff(want, te, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Waited" }, cmp.Ignore())); diff != "" {
		t.Errorf("TransitionError (-want +got):\n%s", diff)
	}
	if te.Waited < fast.Stall+fast.AfterSignal || te.Waited > time.Since(start) {
		t.Errorf("Waited = %s, want between %s and %s", te.Waited, fast.Stall+fast.AfterSignal, time.Since(start))
	}
	// Reversed and unloaded; the replace never happened.
	if diff := cmp.Diff([]kmod.Livepatch{enabled("lp_base", 1, false)}, patches(t, k)); diff != "" {
		t.Errorf("Livepatches() (-want +got):\n%s", diff)
	}
	if got := moduleNames(t, k); !slices.Equal(got, []string{"lp_base"}) {
		t.Errorf("modules = %v, want [lp_base]", got)
	}
	wantLog(t, k, "livepatch: signaling remaining tasks")
	wantLog(t, k, "livepatch: 'lp_a': reversing transition from patching")
}

func TestStalledEnableUnloadFails(t *testing.T) {
	k, dir := openKernel(t)
	setFaults(t, dir, Faults{"lp_a": {Never: true, UnloadBusy: 1000}})
	load(t, k, "lp_a", false)
	var te *kmod.TransitionError
	if err := k.WaitTransition(context.Background(), "lp_a", fast); !errors.As(err, &te) {
		t.Fatalf("WaitTransition: %v, want a TransitionError", err)
	}
	if te.Reverted || !errors.Is(te.Err, kmod.ErrBusy) {
		t.Errorf("TransitionError = %+v, want not Reverted with an EBUSY Err", te)
	}
	if got := patches(t, k); len(got) != 0 {
		t.Errorf("livepatches = %v, want none (the transition was reversed)", got)
	}
}

func TestStalledDisable(t *testing.T) {
	ctx := context.Background()
	k, dir := openKernel(t)
	load(t, k, "lp_a", false)
	setFaults(t, dir, Faults{"lp_a": {Never: true}})
	if err := k.Disable(ctx, "lp_a"); err != nil {
		t.Fatal(err)
	}
	var te *kmod.TransitionError
	if err := k.WaitTransition(ctx, "lp_a", fast); !errors.As(err, &te) {
		t.Fatalf("WaitTransition: %v, want a TransitionError", err)
	}
	if te.Enabling || !te.Reverted || te.Err != nil || len(te.Blockers) == 0 {
		t.Errorf("TransitionError = %+v", te)
	}
	// Back to enabled; the module stays.
	if diff := cmp.Diff([]kmod.Livepatch{enabled("lp_a", 1, false)}, patches(t, k)); diff != "" {
		t.Errorf("Livepatches() (-want +got):\n%s", diff)
	}
	if got := moduleNames(t, k); !slices.Equal(got, []string{"lp_a"}) {
		t.Errorf("modules = %v", got)
	}
	wantLog(t, k, "livepatch: 'lp_a': reversing transition from unpatching")
}

func TestCompleteOnSignal(t *testing.T) {
	ctx := context.Background()
	k, dir := openKernel(t)
	setFaults(t, dir, Faults{AnyModule: {Never: true, CompleteOnSignal: true}})
	load(t, k, "lp_a", false)
	if err := k.WaitTransition(ctx, "lp_a", fast); err != nil {
		t.Fatalf("enable: WaitTransition: %v", err)
	}
	if diff := cmp.Diff([]kmod.Livepatch{enabled("lp_a", 1, false)}, patches(t, k)); diff != "" {
		t.Errorf("Livepatches() (-want +got):\n%s", diff)
	}
	if err := k.Disable(ctx, "lp_a"); err != nil {
		t.Fatal(err)
	}
	if err := k.WaitTransition(ctx, "lp_a", fast); err != nil {
		t.Fatalf("disable: WaitTransition: %v", err)
	}
	if got := patches(t, k); len(got) != 0 {
		t.Errorf("livepatches = %v", got)
	}
	wantLog(t, k, "livepatch: signaling remaining tasks")
}

func TestWaitTransitionCanceled(t *testing.T) {
	k, dir := openKernel(t)
	setFaults(t, dir, Faults{AnyModule: {Never: true}})
	load(t, k, "lp_a", false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := k.WaitTransition(ctx, "lp_a", kmod.Timeouts{Stall: time.Hour, Poll: time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitTransition: %v, want DeadlineExceeded", err)
	}
	// Cancelling the wait leaves the transition alone.
	if lps := patches(t, k); len(lps) != 1 || !lps[0].Transition {
		t.Errorf("livepatches = %+v, want lp_a still in transition", lps)
	}
}

func TestOopsFault(t *testing.T) {
	tests := []struct {
		kind    string
		problem string
		bit     kmod.Taint
	}{
		{"", "oops", 1 << 7},
		{"oops", "oops", 1 << 7},
		{"bug", "bug", 1 << 7},
		{"warn", "warn", 1 << 9},
	}
	for _, tt := range tests {
		t.Run(tt.problem+"/"+tt.kind, func(t *testing.T) {
			k, dir := openKernel(t)
			_, cursor, err := k.Log(0)
			if err != nil {
				t.Fatal(err)
			}
			setFaults(t, dir, Faults{"lp_a": {OopsAfterLoad: true, Oops: tt.kind}})
			load(t, k, "lp_a", false)
			recs, next, err := k.Log(cursor)
			if err != nil {
				t.Fatal(err)
			}
			var problems []string
			for _, r := range recs {
				if r.Seq <= cursor {
					t.Errorf("Log(%d) returned record %d", cursor, r.Seq)
				}
				if p := r.Problem(); p != "" {
					problems = append(problems, p)
				}
			}
			if !slices.Equal(problems, []string{tt.problem}) {
				t.Errorf("problems in the log = %v, want [%s]", problems, tt.problem)
			}
			if got := taint(t, k); got != 45056|tt.bit {
				t.Errorf("taint = %d (%v), want %d", got, got.Names(), 45056|tt.bit)
			}
			if recs, again, err := k.Log(next); err != nil || len(recs) != 0 || again != next {
				t.Errorf("Log(%d) = %v, %d, %v; want nothing new", next, recs, again, err)
			}
		})
	}
}

func TestHealthFault(t *testing.T) {
	ctx := context.Background()
	k, dir := openKernel(t)
	if k.HealthFault() {
		t.Error("HealthFault() without faults")
	}
	setFaults(t, dir, Faults{"lp_bad": {HealthFail: true}})
	if k.HealthFault() {
		t.Error("HealthFault() before lp_bad is loaded")
	}
	load(t, k, "lp_bad", false)
	if !k.HealthFault() {
		t.Error("HealthFault() = false with lp_bad loaded")
	}
	if err := k.Disable(ctx, "lp_bad"); err != nil {
		t.Fatal(err)
	}
	if err := k.Unload(ctx, "lp_bad"); err != nil {
		t.Fatal(err)
	}
	if k.HealthFault() {
		t.Error("HealthFault() after lp_bad is unloaded")
	}
	setFaults(t, dir, Faults{AnyModule: {HealthFail: true}})
	if !k.HealthFault() {
		t.Error("HealthFault() = false under a * fault")
	}
}

func TestReboot(t *testing.T) {
	k, dir := openKernel(t)
	setFaults(t, dir, Faults{"lp_b": {Never: true}})
	load(t, k, "lp_a", false)
	load(t, k, "lp_b", false)
	before, _ := k.Identity()
	_, cursor, err := k.Log(0)
	if err != nil {
		t.Fatal(err)
	}

	if err := Reboot(dir, "0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	id, err := k.Identity()
	if err != nil {
		t.Fatal(err)
	}
	if id.BootID == before.BootID || id.BootID == "" {
		t.Errorf("boot id %q did not change across a reboot (was %q)", id.BootID, before.BootID)
	}
	if id.BuildID != "0123456789abcdef" || id.Release != before.Release {
		t.Errorf("Identity() after reboot = %+v, want build id 0123456789abcdef, release %s", id, before.Release)
	}
	if got := moduleNames(t, k); len(got) != 0 {
		t.Errorf("modules after reboot = %v", got)
	}
	if got := patches(t, k); len(got) != 0 {
		t.Errorf("livepatches after reboot = %v", got)
	}
	if got := taint(t, k); got != 0 {
		t.Errorf("taint after reboot = %d", got)
	}
	// The log is cleared, its numbering continues: an old cursor reads
	// the new boot's records.
	all, _, err := k.Log(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].Seq <= cursor || !strings.Contains(all[0].Message, "SIMULATED kernel") {
		t.Errorf("log after reboot = %+v, want one boot record after seq %d", all, cursor)
	}
	if recs, _, _ := k.Log(cursor); len(recs) != 1 {
		t.Errorf("Log(old cursor) = %+v, want the boot record", recs)
	}

	// Same build id when none is given; the faults survive.
	if err := Reboot(dir, ""); err != nil {
		t.Fatal(err)
	}
	if id, _ := k.Identity(); id.BuildID != "0123456789abcdef" {
		t.Errorf("build id after Reboot(\"\") = %s", id.BuildID)
	}
	load(t, k, "lp_b", false)
	if lps := patches(t, k); len(lps) != 1 || !lps[0].Transition {
		t.Errorf("livepatches = %+v, want lp_b stuck in transition (faults survive a reboot)", lps)
	}
	if err := Reboot(dir, "xyz"); err == nil {
		t.Error("Reboot with a non-hex build id succeeded")
	}
}

func TestNoLivepatch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := Init(dir, Config{NoLivepatch: true}); err != nil {
		t.Fatal(err)
	}
	k, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := k.Identity(); err != nil || id.Livepatch || !id.Simulated {
		t.Errorf("Identity() = %+v, %v; want no livepatch", id, err)
	}
	if err := k.Load(ctx, moduleFile(t, livepatch("lp_a")), kmod.LoadSpec{Name: "lp_a"}); !errors.Is(err, kmod.ErrNoLivepatch) {
		t.Errorf("Load: %v, want ErrNoLivepatch", err)
	}
	if _, err := k.Livepatches(); !errors.Is(err, kmod.ErrNoLivepatch) {
		t.Errorf("Livepatches: %v, want ErrNoLivepatch", err)
	}
	if err := k.Disable(ctx, "lp_a"); !errors.Is(err, kmod.ErrNoLivepatch) {
		t.Errorf("Disable: %v, want ErrNoLivepatch", err)
	}
	if err := k.WaitTransition(ctx, "lp_a", fast); !errors.Is(err, kmod.ErrNoLivepatch) {
		t.Errorf("WaitTransition: %v, want ErrNoLivepatch", err)
	}
	if mods, err := k.Modules(); err != nil || len(mods) != 0 {
		t.Errorf("Modules() = %v, %v", mods, err)
	}
}

func TestTwoViewsOfOneKernel(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k1, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := Open(dir) // does not re-initialise
	if err != nil {
		t.Fatal(err)
	}
	load(t, k1, "lp_a", false)
	if got := patchNames(t, k2); !slices.Equal(got, []string{"lp_a"}) {
		t.Errorf("second view: patches = %v", got)
	}
	if err := k2.Disable(ctx, "lp_a"); err != nil {
		t.Fatal(err)
	}
	if err := k2.Unload(ctx, "lp_a"); err != nil {
		t.Fatal(err)
	}
	if got := moduleNames(t, k1); len(got) != 0 {
		t.Errorf("first view: modules = %v", got)
	}
	k3, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := taint(t, k3); got != 45056 {
		t.Errorf("third view: taint = %d", got)
	}
}

func TestConcurrentLoads(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	files := make([]*os.File, n)
	for i := range files {
		files[i] = moduleFile(t, livepatch(modName("lp_g", i)))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			k, err := Open(dir) // a Kernel of its own, as another process would have
			if err == nil {
				err = k.Load(context.Background(), files[i], kmod.LoadSpec{Name: modName("lp_g", i)})
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	k, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := moduleNames(t, k)
	slices.Sort(got)
	var want []string
	for i := range n {
		want = append(want, modName("lp_g", i))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("modules (-want +got):\n%s", diff)
	}
	// Every load's records made it, each with its own sequence number.
	recs, _, err := k.Log(0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	enabling := 0
	for _, r := range recs {
		if seen[r.Seq] {
			t.Errorf("duplicate log seq %d", r.Seq)
		}
		seen[r.Seq] = true
		if strings.HasPrefix(r.Message, "livepatch: enabling patch") {
			enabling++
		}
	}
	if enabling != n {
		t.Errorf("%d enabling records, want %d", enabling, n)
	}
}

func modName(prefix string, i int) string {
	return prefix + "_" + string(rune('a'+i))
}
