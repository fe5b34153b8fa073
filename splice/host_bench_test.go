package splice_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/splice"
)

// memKernel is an instant in-memory kernel: with it, a benchmark measures
// only splicefleet's own work (verification, checks, store, journal).
type memKernel struct {
	mu      sync.Mutex
	patches map[string]bool // name -> enabled
	order   []string
}

func newMemKernel() *memKernel { return &memKernel{patches: map[string]bool{}} }

func (k *memKernel) Info() (splice.KernelInfo, error) {
	return splice.KernelInfo{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64", BootID: "boot-1", Livepatch: true, Simulated: true}, nil
}

func (k *memKernel) Patches() ([]splice.KernelPatch, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []splice.KernelPatch
	for _, n := range k.order {
		out = append(out, splice.KernelPatch{Name: n, Enabled: k.patches[n]})
	}
	return out, nil
}

func (k *memKernel) Modules() ([]string, error) { return append([]string(nil), k.order...), nil }

func (k *memKernel) Load(_ context.Context, _ *os.File, name string, _ bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.patches[name] = true
	k.order = append(k.order, name)
	return nil
}

func (k *memKernel) WaitTransition(context.Context, string) error { return nil }

func (k *memKernel) Disable(_ context.Context, name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.patches[name] = false
	return nil
}

func (k *memKernel) Unload(_ context.Context, name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.patches, name)
	for i, n := range k.order {
		if n == name {
			k.order = append(k.order[:i], k.order[i+1:]...)
			break
		}
	}
	return nil
}

// benchHost opens a host on an instant kernel with a signed bundle whose
// module is 1 MiB. It returns the host's state directory too.
func benchHost(b *testing.B) (*splice.Host, *splice.Bundle, *fixture, string) {
	f := newFixture(b, 1)
	mod := fakemodule.Build(fakemodule.Options{Name: "livepatch_bench", Livepatch: true, Functions: []string{"f"}, Padding: 1<<20 - 4096})
	m := testManifest()
	m.Module.Name = "livepatch_bench"
	m.Functions = []string{"f"}
	bb, err := splice.New(m, mod)
	if err != nil {
		b.Fatal(err)
	}
	sig, _ := f.signers[0].Sign(bb.Manifest, now.Add(-time.Minute))
	if _, err := bb.AddSignature(sig); err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(b.TempDir(), "state")
	h, err := splice.OpenHost(context.Background(), splice.HostConfig{
		StateDir: dir, Kernel: newMemKernel(), Inspect: agent.InspectModule,
		Now: func() time.Time { return now },
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.Close)
	return h, bb, f, dir
}

// BenchmarkApplyUndo measures one apply and one undo of a 1 MiB bundle,
// reported separately, with a kernel that does no work of its own. The
// store is emptied between rounds (outside the measured times), so every
// apply writes and syncs the bundle and its module as a first apply does.
func BenchmarkApplyUndo(b *testing.B) {
	h, bb, f, dir := benchHost(b)
	p := f.policy(b, 1)
	ctx := context.Background()
	var apply, undo time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := h.Apply(ctx, bb, p); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, _, err := h.Undo(ctx, "cve-2024-1086"); err != nil {
			b.Fatal(err)
		}
		apply += t1.Sub(t0)
		undo += time.Since(t1)
		for _, sub := range []string{"heads", "modules", "local"} {
			if err := os.RemoveAll(filepath.Join(dir, splice.StoreDir, sub)); err != nil {
				b.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, splice.StoreDir, sub), 0o700); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(apply.Nanoseconds())/float64(b.N), "apply-ns/op")
	b.ReportMetric(float64(undo.Nanoseconds())/float64(b.N), "undo-ns/op")
}

// BenchmarkApplyBaseline is the part of an apply that cannot be avoided,
// run beside BenchmarkApplyUndo for a ratio: verifying the bundle.
func BenchmarkApplyBaseline(b *testing.B) {
	_, bb, f, _ := benchHost(b)
	p := f.policy(b, 1)
	for b.Loop() {
		if _, err := splice.Verify(bb, p, now); err != nil {
			b.Fatal(err)
		}
	}
}
