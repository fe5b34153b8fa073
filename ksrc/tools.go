package ksrc

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
)

// toolCheck looks for what a kernel build needs. The fields are seams
// for tests; newToolCheck fills them from the host.
type toolCheck struct {
	lookPath   func(string) (string, error)
	includeDir string // where libc, libelf and OpenSSL headers live
}

func newToolCheck() toolCheck {
	return toolCheck{lookPath: exec.LookPath, includeDir: "/usr/include"}
}

// check returns a *ToolsError naming every missing tool and the Debian
// packages that provide them, or nil. cc is the kernel's compiler (e.g.
// gcc-12, its own package); pahole is needed when the kernel
// configuration records a pahole version (BTF debug info).
func (tc toolCheck) check(cc string, pahole bool) error {
	type need struct{ what, pkg string }
	needs := []need{
		{"make", "make"},
		{cc, cc},
		{"flex", "flex"},
		{"bison", "bison"},
		{"bc", "bc"},
		{"perl", "perl"},
	}
	if pahole {
		needs = append(needs, need{"pahole", "dwarves"})
	}
	var e ToolsError
	for _, n := range needs {
		if _, err := tc.lookPath(n.what); err != nil {
			e.Missing = append(e.Missing, n.what)
			e.Packages = append(e.Packages, n.pkg)
		}
	}
	headers := []need{
		{"libc headers (stdio.h)", "libc6-dev"},
		{"libelf headers (gelf.h, for objtool)", "libelf-dev"},
		{"OpenSSL headers (openssl/ssl.h, for sign-file and extract-cert)", "libssl-dev"},
	}
	files := []string{"stdio.h", "gelf.h", "openssl/ssl.h"}
	for i, h := range headers {
		if _, err := os.Stat(filepath.Join(tc.includeDir, files[i])); err != nil {
			e.Missing = append(e.Missing, h.what)
			e.Packages = append(e.Packages, h.pkg)
		}
	}
	if len(e.Missing) == 0 {
		return nil
	}
	slices.Sort(e.Packages)
	e.Packages = slices.Compact(e.Packages)
	return &e
}
