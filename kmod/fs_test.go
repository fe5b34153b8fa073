package kmod

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// newTestFS writes files into a fresh temporary root and returns its FS.
func newTestFS(t *testing.T, files map[string]string) FS {
	t.Helper()
	root := t.TempDir()
	testutil.WriteTree(t, root, files)
	k, err := NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wantErrContaining fails unless err is non-nil and its message contains
// every one of subs.
func wantErrContaining(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want an error containing %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("err = %q, want it to contain %q", err, s)
		}
	}
}

func TestFSFixture(t *testing.T) {
	k, err := NewFS(fixtureRoot)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("identity", func(t *testing.T) {
		got, err := k.Identity()
		if err != nil {
			t.Fatal(err)
		}
		want := Identity{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64", BuildID: fixtureBuildID, BootID: "5c0a7e43-3f52-4e0b-9a57-0d7f1e6b2c11", Livepatch: true}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("Identity (-want +got):\n%s", d)
		}
	})
	t.Run("livepatches", func(t *testing.T) {
		got, err := k.Livepatches()
		if err != nil {
			t.Fatal(err)
		}
		want := []Livepatch{{
			Name: "livepatch_cmdline", Enabled: true,
			Objects: []LivepatchObject{{Name: "vmlinux", Patched: true}},
		}}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("Livepatches (-want +got):\n%s", d)
		}
	})
	t.Run("modules", func(t *testing.T) {
		got, err := k.Modules()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 7 {
			t.Fatalf("got %d modules, want 7", len(got))
		}
		want := []Module{
			{Name: "livepatch_cmdline", Size: 16384, Refs: 1, State: "Live", Taints: "K", Address: "0x0000000000000000"},
			{Name: "nft_chain_nat", Size: 16384, Refs: 3, State: "Live", Address: "0x0000000000000000"},
			{Name: "nf_nat", Size: 57344, Refs: 1, Deps: []string{"nft_chain_nat"}, State: "Live", Address: "0x0000000000000000"},
		}
		if d := cmp.Diff(want, got[:3]); d != "" {
			t.Errorf("Modules (-want +got):\n%s", d)
		}
		if d := cmp.Diff([]string{"nf_nat", "nf_conntrack"}, got[6].Deps); d != "" {
			t.Errorf("libcrc32c deps (-want +got):\n%s", d)
		}
	})
	t.Run("taint", func(t *testing.T) {
		got, err := k.Taint()
		if err != nil {
			t.Fatal(err)
		}
		if got != 45056 || got&TaintLivepatch == 0 {
			t.Errorf("Taint = %d, want 45056 with the livepatch bit", got)
		}
		if d := cmp.Diff([]string{"oot_module", "unsigned_module", "livepatch"}, got.Names()); d != "" {
			t.Errorf("Taint.Names (-want +got):\n%s", d)
		}
	})
	t.Run("no transition, no blockers", func(t *testing.T) {
		got, err := k.Blockers(1)
		if err != nil || len(got) != 0 {
			t.Errorf("Blockers(1) = %v, %v; want none", got, err)
		}
		if s, err := k.PatchState(1); err != nil || s != -1 {
			t.Errorf("PatchState(1) = %d, %v; want -1", s, err)
		}
	})
}

func TestNewFS(t *testing.T) {
	if k, err := NewFS(""); err != nil || k.Root() != "/" {
		t.Errorf(`NewFS("") = %q, %v; want root "/"`, k.Root(), err)
	}
	if (FS{}).Root() != "/" {
		t.Errorf("zero FS root = %q, want /", FS{}.Root())
	}
	if _, err := NewFS(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("NewFS(missing): err = %v, want not exist", err)
	}
	file := filepath.Join(t.TempDir(), "f")
	testutil.WriteTree(t, filepath.Dir(file), map[string]string{"f": ""})
	_, err := NewFS(file)
	wantErrContaining(t, err, file, "not a folder")
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{"v": "  1\n\n", "long": strings.Repeat("x", 10)})
	if s, err := readFile(filepath.Join(dir, "v"), 16); err != nil || s != "1" {
		t.Errorf("readFile = %q, %v; want %q", s, err, "1")
	}
	if s, err := readFile(filepath.Join(dir, "long"), 10); err != nil || len(s) != 10 {
		t.Errorf("readFile at the limit = %q, %v", s, err)
	}
	long := filepath.Join(dir, "long")
	_, err := readFile(long, 9)
	wantErrContaining(t, err, long, "more than 9 bytes")
	missing := filepath.Join(dir, "missing")
	_, err = readFile(missing, 9)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want not exist", err)
	}
	wantErrContaining(t, err, missing)
}

func TestReadBoolAndInt(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{"yes": "1\n", "no": "0", "two": "2\n", "neg": "-1\n", "word": "on\n"})
	for name, want := range map[string]bool{"yes": true, "no": false} {
		if got, err := readBool(filepath.Join(dir, name)); err != nil || got != want {
			t.Errorf("readBool(%s) = %t, %v; want %t", name, got, err, want)
		}
	}
	_, err := readBool(filepath.Join(dir, "two"))
	wantErrContaining(t, err, filepath.Join(dir, "two"), `want 0 or 1, got "2"`)
	if n, err := readInt(filepath.Join(dir, "neg")); err != nil || n != -1 {
		t.Errorf("readInt(neg) = %d, %v; want -1", n, err)
	}
	_, err = readInt(filepath.Join(dir, "word"))
	wantErrContaining(t, err, filepath.Join(dir, "word"), "want an integer")
}

func TestWriteFileNeverCreates(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{"enabled": "1\n"})
	if err := writeFile(filepath.Join(dir, "enabled"), "0"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "enabled")); string(b) != "0" {
		t.Errorf("enabled = %q after writing 0", b)
	}
	missing := filepath.Join(dir, "force")
	err := writeFile(missing, "1")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("writing a missing file: err = %v, want not exist", err)
	}
	wantErrContaining(t, err, missing)
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("writeFile created %s", missing)
	}
}

func TestParseModules(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Module
		wantErr string
	}{
		{name: "empty", in: ""},
		{
			name: "livepatch module",
			in:   "livepatch_cmdline 16384 1 - Live 0x0000000000000000 (K)\n",
			want: []Module{{Name: "livepatch_cmdline", Size: 16384, Refs: 1, State: "Live", Taints: "K", Address: "0x0000000000000000"}},
		},
		{
			name: "deps with trailing comma, several taints, blank line",
			in:   "a 1 0 - Loading 0xffffffffc0000000\n\nb 2 2 a,c, Unloading 0xffffffffc0001000 (OE)\n",
			want: []Module{
				{Name: "a", Size: 1, State: "Loading", Address: "0xffffffffc0000000"},
				{Name: "b", Size: 2, Refs: 2, Deps: []string{"a", "c"}, State: "Unloading", Taints: "OE", Address: "0xffffffffc0001000"},
			},
		},
		{name: "too few fields", in: "a 1 0 - Live\n", wantErr: "line 1: want 6 or 7 fields, got 5"},
		{name: "too many fields", in: "a 1 0 - Live 0x0 (K) x\n", wantErr: "want 6 or 7 fields, got 8"},
		{name: "bad size", in: "ok 1 0 - Live 0x0\nlp big 0 - Live 0x0\n", wantErr: `line 2: module lp: bad size "big"`},
		{name: "negative size", in: "lp -1 0 - Live 0x0\n", wantErr: `bad size "-1"`},
		{name: "bad refs", in: "lp 1 x - Live 0x0\n", wantErr: `bad reference count "x"`},
		{name: "bad taints", in: "lp 1 0 - Live 0x0 K\n", wantErr: `bad taint flags "K"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseModules(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				wantErrContaining(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("parseModules (-want +got):\n%s", d)
			}
		})
	}
}

func TestModulesErrorNamesFile(t *testing.T) {
	k := newTestFS(t, map[string]string{"proc/modules": "broken\n"})
	_, err := k.Modules()
	wantErrContaining(t, err, filepath.Join(k.Root(), "proc", "modules"), "line 1")
}

func TestParseTaint(t *testing.T) {
	for in, want := range map[string]Taint{"0": 0, "45056\n": 45056, " 1 ": 1, "18446744073709551615": 1<<64 - 1} {
		if got, err := parseTaint(in); err != nil || got != want {
			t.Errorf("parseTaint(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "0x10", "K"} {
		if _, err := parseTaint(in); err == nil {
			t.Errorf("parseTaint(%q): no error", in)
		}
	}
	k := newTestFS(t, map[string]string{"proc/sys/kernel/tainted": "lots\n"})
	_, err := k.Taint()
	wantErrContaining(t, err, filepath.Join(k.Root(), "proc/sys/kernel/tainted"), `"lots"`)
}

func TestLivepatchesNewerKernel(t *testing.T) {
	k := newTestFS(t, map[string]string{
		// The newest patch sorts last by stack order, not by name.
		"sys/kernel/livepatch/a_new/enabled":          "1\n",
		"sys/kernel/livepatch/a_new/transition":       "1\n",
		"sys/kernel/livepatch/a_new/replace":          "1\n",
		"sys/kernel/livepatch/a_new/stack_order":      "2\n",
		"sys/kernel/livepatch/a_new/vmlinux/patched":  "1\n",
		"sys/kernel/livepatch/a_new/ext4/patched":     "0\n",
		"sys/kernel/livepatch/z_old/enabled":          "1\n",
		"sys/kernel/livepatch/z_old/transition":       "0\n",
		"sys/kernel/livepatch/z_old/replace":          "0\n",
		"sys/kernel/livepatch/z_old/stack_order":      "1\n",
		"sys/kernel/livepatch/z_old/vmlinux/patched":  "1\n",
		"sys/kernel/livepatch/stray-file-is-ignored":  "",
		"sys/kernel/livepatch/z_old/vmlinux/f,1/note": "",
	})
	got, err := k.Livepatches()
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	want := []Livepatch{
		{Name: "z_old", Enabled: true, Replace: &no, StackOrder: 1, Objects: []LivepatchObject{{Name: "vmlinux", Patched: true}}},
		{Name: "a_new", Enabled: true, Transition: true, Replace: &yes, StackOrder: 2, Objects: []LivepatchObject{{Name: "ext4"}, {Name: "vmlinux", Patched: true}}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Livepatches (-want +got):\n%s", d)
	}
}

func TestLivepatchesOlderKernelSortsByName(t *testing.T) {
	k := newTestFS(t, map[string]string{
		"sys/kernel/livepatch/b/enabled":    "0\n",
		"sys/kernel/livepatch/b/transition": "1\n",
		"sys/kernel/livepatch/a/enabled":    "1\n",
		"sys/kernel/livepatch/a/transition": "0\n",
		"sys/kernel/livepatch/a/vmlinux/x":  "", // no patched file (before 5.x)
	})
	got, err := k.Livepatches()
	if err != nil {
		t.Fatal(err)
	}
	want := []Livepatch{
		{Name: "a", Enabled: true, Objects: []LivepatchObject{{Name: "vmlinux"}}},
		{Name: "b", Transition: true},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Livepatches (-want +got):\n%s", d)
	}
}

func TestLivepatchesErrors(t *testing.T) {
	t.Run("no livepatch support", func(t *testing.T) {
		k := newTestFS(t, map[string]string{"proc/modules": ""})
		_, err := k.Livepatches()
		if !errors.Is(err, ErrNoLivepatch) {
			t.Errorf("err = %v, want ErrNoLivepatch", err)
		}
	})
	tests := map[string]struct {
		files map[string]string
		want  string
	}{
		"missing enabled": {
			files: map[string]string{"sys/kernel/livepatch/p/transition": "0\n"},
			want:  "sys/kernel/livepatch/p/enabled",
		},
		"missing transition": {
			files: map[string]string{"sys/kernel/livepatch/p/enabled": "1\n"},
			want:  "sys/kernel/livepatch/p/transition",
		},
		"malformed replace": {
			files: map[string]string{"sys/kernel/livepatch/p/enabled": "1", "sys/kernel/livepatch/p/transition": "0", "sys/kernel/livepatch/p/replace": "yes"},
			want:  "sys/kernel/livepatch/p/replace",
		},
		"malformed stack order": {
			files: map[string]string{"sys/kernel/livepatch/p/enabled": "1", "sys/kernel/livepatch/p/transition": "0", "sys/kernel/livepatch/p/stack_order": "first"},
			want:  "sys/kernel/livepatch/p/stack_order",
		},
		"malformed patched": {
			files: map[string]string{"sys/kernel/livepatch/p/enabled": "1", "sys/kernel/livepatch/p/transition": "0", "sys/kernel/livepatch/p/vmlinux/patched": "maybe"},
			want:  "sys/kernel/livepatch/p/vmlinux/patched",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			k := newTestFS(t, tt.files)
			_, err := k.Livepatches()
			wantErrContaining(t, err, filepath.Join(k.Root(), tt.want))
		})
	}
}

func TestIdentityTree(t *testing.T) {
	t.Run("older kernel without arch, notes or livepatch", func(t *testing.T) {
		k := newTestFS(t, map[string]string{"proc/sys/kernel/osrelease": "5.10.0-30-amd64\n"})
		_, err := k.Identity()
		// Away from "/", a missing arch file is an error naming it.
		wantErrContaining(t, err, filepath.Join(k.Root(), "proc/sys/kernel/arch"))
	})
	t.Run("no notes, no livepatch", func(t *testing.T) {
		k := newTestFS(t, map[string]string{
			"proc/sys/kernel/osrelease": "6.1.0-56-amd64\n",
			"proc/sys/kernel/arch":      "x86_64\n",
		})
		got, err := k.Identity()
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(Identity{Release: "6.1.0-56-amd64", Arch: "x86_64"}, got); d != "" {
			t.Errorf("Identity (-want +got):\n%s", d)
		}
	})
	t.Run("corrupt notes", func(t *testing.T) {
		k := newTestFS(t, map[string]string{
			"proc/sys/kernel/osrelease": "6.1.0-56-amd64\n",
			"proc/sys/kernel/arch":      "x86_64\n",
			"sys/kernel/notes":          "\x04\x00\x00",
		})
		_, err := k.Identity()
		wantErrContaining(t, err, filepath.Join(k.Root(), "sys/kernel/notes"), "truncated header")
	})
	t.Run("missing release", func(t *testing.T) {
		k := newTestFS(t, map[string]string{"proc/sys/kernel/arch": "x86_64\n"})
		_, err := k.Identity()
		wantErrContaining(t, err, filepath.Join(k.Root(), "proc/sys/kernel/osrelease"))
	})
}

// transitionTasks is a proc tree during an enable transition: two tasks
// still on the old code (one a thread of a multi-threaded process), one
// already switched, one that exited between reads (no comm).
var transitionTasks = map[string]string{
	"proc/100/patch_state":          "0\n",
	"proc/100/comm":                 "sleeper\n",
	"proc/101/patch_state":          "1\n",
	"proc/101/comm":                 "done\n",
	"proc/7/task/7/patch_state":     "1\n",
	"proc/7/task/7/comm":            "server\n",
	"proc/7/task/9/patch_state":     "0\n",
	"proc/7/task/9/comm":            "worker\n",
	"proc/55/patch_state":           "0\n", // exited: comm is gone
	"proc/self/patch_state":         "0\n", // not a pid
	"proc/sys/kernel/tainted":       "0\n",
	"proc/102/task/102/patch_state": "-1\n",
	"proc/102/task/102/comm":        "idle\n",
}

func TestBlockers(t *testing.T) {
	k := newTestFS(t, transitionTasks)
	got, err := k.Blockers(1)
	if err != nil {
		t.Fatal(err)
	}
	want := []Task{{PID: 9, Comm: "worker"}, {PID: 100, Comm: "sleeper"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Blockers(1) (-want +got):\n%s", d)
	}
	got, err = k.Blockers(0)
	if err != nil {
		t.Fatal(err)
	}
	want = []Task{{PID: 7, Comm: "server"}, {PID: 101, Comm: "done"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Blockers(0) (-want +got):\n%s", d)
	}
	if _, err := k.PatchState(55); err != nil {
		t.Errorf("PatchState(55): %v", err)
	}
	if _, err := k.PatchState(56); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("PatchState(56): err = %v, want not exist", err)
	}
}

func TestBlockersBounded(t *testing.T) {
	files := map[string]string{}
	for pid := 1000; pid < 1000+2*maxBlockers; pid++ {
		files[filepath.Join("proc", itoa(pid), "patch_state")] = "0"
		files[filepath.Join("proc", itoa(pid), "comm")] = "t"
	}
	k := newTestFS(t, files)
	got, err := k.Blockers(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != maxBlockers || got[0].PID != 1000 {
		t.Errorf("Blockers returned %d tasks starting at %v, want %d starting at pid 1000", len(got), got[:1], maxBlockers)
	}
}
