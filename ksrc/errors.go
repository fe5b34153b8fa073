package ksrc

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinels a *PatchError wraps, for callers that branch with errors.Is.
var (
	ErrPatchTooLarge  = errors.New("patch too large")
	ErrEmptyPatch     = errors.New("patch changes no files")
	ErrMalformedPatch = errors.New("malformed patch")
	ErrBinaryPatch    = errors.New("binary patches are not supported")
	ErrNewFile        = errors.New("new files are not supported (a livepatch replaces functions of existing units)")
	ErrDeletedFile    = errors.New("deleting files is not supported")
	ErrRename         = errors.New("renames and copies are not supported")
	ErrModeChange     = errors.New("file mode changes are not supported")
	ErrUnsafePath     = errors.New("unsafe path")
)

// Sentinels for preparing and compiling.
var (
	// ErrMissingTools: the host lacks programs or headers a kernel build
	// needs; the *ToolsError lists the Debian packages to install.
	ErrMissingTools = errors.New("missing build tools")
	// ErrVersionMismatch: the source tree is not the headers' kernel.
	ErrVersionMismatch = errors.New("kernel source and headers differ")
	// ErrConfigDrift: the configuration kbuild settled on differs from
	// the target's in symbols that change the generated code.
	ErrConfigDrift = errors.New("configuration differs from the target's")
	// ErrUnsupportedFile: the patch touches a file that cannot be
	// compiled on its own into a unit (a header, a Makefile, ...).
	ErrUnsupportedFile = errors.New("unsupported file in patch")
	// ErrHeaderUnused: the patch changes headers that no unit of the
	// configuration reads, or only definitions (or comments) of them
	// that no unit uses.
	ErrHeaderUnused = errors.New("no unit the configuration builds reads what the patch changes in the headers")
	// ErrNotBuilt: no .c file of the patch is built by the
	// configuration, and it changes no header: nothing to patch.
	ErrNotBuilt = errors.New("nothing to patch: the configuration builds none of the changed files")
	// ErrKconfig: the patch changes a Kconfig file in a way that
	// concerns the running kernel's configuration (kconfig.go).
	ErrKconfig = errors.New("a Kconfig change concerns this kernel")
	// ErrBuildFailed: make or the compiler failed; its output went to
	// the log.
	ErrBuildFailed = errors.New("build failed")
)

// PatchError says why ParsePatch refused a patch, and where.
type PatchError struct {
	Line   int    // 1-based line of the patch, 0 when not about one line
	Path   string // the file the section is about, when known
	Err    error  // one of the Err*Patch / Err* sentinels above
	Detail string
}

func (e *PatchError) Error() string {
	var b strings.Builder
	b.WriteString("patch")
	if e.Line > 0 {
		fmt.Fprintf(&b, " line %d", e.Line)
	}
	if e.Path != "" {
		fmt.Fprintf(&b, " (%s)", e.Path)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	return b.String()
}

func (e *PatchError) Unwrap() error { return e.Err }

// ApplyError says which hunk of which file does not apply, and why.
type ApplyError struct {
	Path   string
	Hunk   int // 1-based, as patch(1) counts
	Line   int // the old line the hunk header names
	Detail string
	// Earlier names the earlier update (CompileOnTop) whose hunk it is;
	// empty for the patch itself.
	Earlier string
	// OnTop says the patch's hunk was applied on top of earlier updates.
	OnTop bool
}

func (e *ApplyError) Error() string {
	what := "patch"
	switch {
	case e.Earlier != "":
		what = "earlier update " + e.Earlier
	case e.OnTop:
		what = "patch (on top of the earlier updates)"
	}
	if e.Hunk == 0 {
		return fmt.Sprintf("apply %s to %s: %s", what, e.Path, e.Detail)
	}
	return fmt.Sprintf("apply %s to %s: hunk #%d (at line %d) does not apply: %s", what, e.Path, e.Hunk, e.Line, e.Detail)
}

// ToolsError lists what the host lacks to build kernel units.
type ToolsError struct {
	Missing  []string // what is missing, e.g. "flex", "libelf headers (gelf.h)"
	Packages []string // Debian packages that provide it
}

func (e *ToolsError) Error() string {
	return fmt.Sprintf("building kernel units needs %s: run `apt-get install -y --no-install-recommends %s`",
		strings.Join(e.Missing, ", "), strings.Join(e.Packages, " "))
}

func (e *ToolsError) Unwrap() error { return ErrMissingTools }

// VersionError names both versions when the source tree and the headers
// belong to different kernels.
type VersionError struct {
	Source, SourceVersion   string
	Headers, HeadersVersion string
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("kernel source %s is %s but the headers %s are %s: use the source of the target kernel "+
		"(on Debian, linux-source-X.Y at the same package version as the headers)",
		e.Source, e.SourceVersion, e.Headers, e.HeadersVersion)
}

func (e *VersionError) Unwrap() error { return ErrVersionMismatch }
