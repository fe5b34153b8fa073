package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/splice"
)

func TestAdapterOnFixtureKernel(t *testing.T) {
	l, err := kmod.NewLinux("../kmod/testdata/debian-6.1-cloud")
	if err != nil {
		t.Fatal(err)
	}
	k := NewHostKernel(l, false)
	info, err := k.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Release != "6.1.0-56-cloud-amd64" || info.Arch != "x86_64" || !info.Livepatch || info.Simulated || info.BootID == "" || info.BuildID == "" {
		t.Fatalf("info %+v", info)
	}
	patches, err := k.Patches()
	want := splice.KernelPatch{Name: "livepatch_cmdline", Enabled: true, Objects: []splice.KernelObject{{Name: "vmlinux", Patched: true}}}
	if err != nil || len(patches) != 1 || !reflect.DeepEqual(patches[0], want) {
		t.Fatalf("patches %+v %v, want %+v", patches, err, want)
	}
	mods, err := k.Modules()
	if err != nil || !slices.Contains(mods, "livepatch_cmdline") {
		t.Fatalf("modules %v %v", mods, err)
	}
	if k.Note() != "" {
		t.Errorf("a real kernel is noted as %q", k.Note())
	}
}

// A kernel without module or livepatch support (no /proc/modules, no
// /sys/kernel/livepatch) reads as having no patches, so view still works.
func TestAdapterOnKernelWithoutModules(t *testing.T) {
	root := t.TempDir()
	for f, v := range map[string]string{"proc/sys/kernel/osrelease": "6.18.0-custom", "proc/sys/kernel/arch": "x86_64"} {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := kmod.NewLinux(root)
	if err != nil {
		t.Fatal(err)
	}
	k := NewHostKernel(l, false)
	info, err := k.Info()
	if err != nil || info.Livepatch {
		t.Fatalf("info %+v %v", info, err)
	}
	if p, err := k.Patches(); err != nil || p != nil {
		t.Fatalf("patches %v %v", p, err)
	}
	if m, err := k.Modules(); err != nil || m != nil {
		t.Fatalf("modules %v %v", m, err)
	}
}

func TestInspectModule(t *testing.T) {
	f, err := InspectModule(fakemodule.Build(fakemodule.Options{Name: "lp", Livepatch: true, Functions: []string{"f"}, Extra: map[string]string{"depends": "nf_tables,"}}))
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "lp" || !f.Livepatch || f.Release != "6.1.0-56-cloud-amd64" || f.Arch != "x86_64" || !slices.Equal(f.Depends, []string{"nf_tables"}) {
		t.Fatalf("facts %+v", f)
	}
	if _, err := InspectModule([]byte("junk")); err == nil {
		t.Fatal("junk accepted")
	}
}
