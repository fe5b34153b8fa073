package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

var builds struct {
	sync.Mutex
	paths map[string]string
}

// BuildSplicefleet builds the static splicefleet binary
// (CGO_ENABLED=0 go build ./cmd/splicefleet, from the repository root)
// into cacheDir (empty: the lab cache) and returns its path. The build
// runs once per process and cache folder; later calls return the same
// path. The binary is named after the checkout it was built from: two
// checkouts sharing one lab cache (SPLICEFLEET_LAB_CACHE) each run their
// own code, never the other's.
func BuildSplicefleet(ctx context.Context, cacheDir string) (string, error) {
	cache, err := cacheDir0(cacheDir)
	if err != nil {
		return "", err
	}
	builds.Lock()
	defer builds.Unlock()
	if p, ok := builds.paths[cache]; ok {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("build splicefleet: %w", err)
	}
	dir := filepath.Join(cache, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build splicefleet: %w", err)
	}
	// Build to a private name and rename, so a concurrent run in another
	// process never sees half a binary.
	tmp, err := os.CreateTemp(dir, "splicefleet-*")
	if err != nil {
		return "", fmt.Errorf("build splicefleet: %w", err)
	}
	tmp.Close()
	defer func() { _ = os.Remove(tmp.Name()) }()
	cmd := []string{"build", "-trimpath", "-ldflags", "-s -w -X main.version=lab", "-o", tmp.Name(), "./cmd/splicefleet"}
	if _, err := runEnv(ctx, root, []string{"CGO_ENABLED=0"}, "go", cmd...); err != nil {
		return "", fmt.Errorf("build splicefleet: %w", err)
	}
	sum := sha256.Sum256([]byte(root))
	out := filepath.Join(dir, "splicefleet-"+hex.EncodeToString(sum[:6]))
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("build splicefleet: %w", err)
	}
	if builds.paths == nil {
		builds.paths = map[string]string{}
	}
	builds.paths[cache] = out
	return out, nil
}

func cacheDir0(dir string) (string, error) {
	dir, err := cacheDir(dir)
	if err != nil {
		return "", err
	}
	return dir, os.MkdirAll(dir, 0o755)
}
