package lab

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// patchCreator is what the create-patch scenarios share: the lab kernel
// with its headers, Debian source and System.map, the splicefleet binary,
// the lab's release key, and a folder for patches and bundles. Its
// create runs `splicefleet create` against that kernel; sign signs a
// bundle with the release key.
type patchCreator struct {
	t       *testing.T
	kernel  *DebianKernel
	bin     string // the splicefleet binary
	src     string // the kernel's source tree
	sysmap  string // the kernel's System.map
	modules string // the kernel's lib/modules/RELEASE
	key     string // the release key that signs bundles
	cache   string // create's cache: the prepared tree is shared with package ksrc's own test
	dir     string // patches and bundles
}

// newPatchCreator fetches (once, into the lab cache) what creating a
// livepatch from source needs.
func newPatchCreator(t *testing.T) *patchCreator {
	t.Helper()
	k := fetchKernel(t)
	c := &patchCreator{t: t, kernel: k, bin: splicefleetBinary(t), dir: t.TempDir(),
		modules: filepath.Join(k.Root, "lib", "modules", k.Release)}
	c.key = filepath.Join(labFixture(t).dir, "release.sec.asc")
	opts := FetchOptions{Log: testutil.LogWriter(t)}
	var err error
	if c.src, err = FetchSource(context.Background(), opts, k); err != nil {
		t.Fatal(err)
	}
	// The -dbg package: the real System.map, and the unstripped vmlinux
	// and modules beside it, which create reads for the source file of
	// each static symbol.
	dbg, err := FetchDebugInfo(context.Background(), opts, k)
	if err != nil {
		t.Fatal(err)
	}
	c.sysmap = filepath.Join(dbg, "usr", "lib", "debug", "boot", "System.map-"+k.Release)
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	c.cache = filepath.Join(root, ".cache", "ksrc")
	return c
}

// path names a file in the scenario's folder.
func (c *patchCreator) path(name string) string { return filepath.Join(c.dir, name) }

// writePatch writes a patch into the scenario's folder and returns its path.
func (c *patchCreator) writePatch(name, text string) string {
	c.t.Helper()
	p := c.path(name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// create runs `splicefleet create` for the lab kernel with args (what to
// build from, the bundle's id, version and output), and returns its
// output and how long it took.
func (c *patchCreator) create(args ...string) (string, time.Duration, error) {
	var log bytes.Buffer
	start := time.Now()
	err := sfRun(c.bin, &log, append([]string{"create", "--kernel-source", c.src, "--kernel-build", c.kernel.HeadersDir,
		"--system-map", c.sysmap, "--modules", c.modules, "--cache-dir", c.cache}, args...)...)
	return log.String(), time.Since(start), err
}

// sign signs the bundle at path with the lab's release key and returns
// the signed bundle.
func (c *patchCreator) sign(path string) []byte {
	c.t.Helper()
	if err := sfRun(c.bin, &bytes.Buffer{}, "sign", "--key", c.key, path); err != nil {
		c.t.Fatal(err)
	}
	bundle, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	return bundle
}
