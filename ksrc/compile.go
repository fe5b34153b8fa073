package ksrc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Units are the objects Compile built, in a temporary folder that
// Cleanup removes.
type Units struct {
	// List has one Unit per .c file of the patch, in patch order, then
	// one per unit that reads a changed header, in path order.
	List []Unit
	// Headers are the headers the patch changes, and the .c files it
	// changes that the configuration does not build on their own but
	// #includes into built units (arch/x86/mm/ident_map.c into
	// init_64.c), which are compiled through those units as a header's
	// readers are.
	Headers []string
	// NotBuilt are the .c files of the patch that the configuration
	// does not build (kbuild's evaluation of their folders' Makefiles
	// lists no object of them): nothing of them runs, so they are not
	// compiled and contribute nothing.
	NotBuilt []string
	// Kconfig says, for each Kconfig file of the patch, which options its
	// change is to: options the configuration leaves unset, so it
	// concerns other kernels and the bundle leaves it out (kconfig.go).
	Kconfig []string
	dir     string
}

// Unit is one compilation unit built before and after the patch.
type Unit struct {
	// Path is the source file inside the tree, e.g. "fs/proc/cmdline.c".
	Path string
	// Headers are the headers of the patch the unit reads, as kbuild's
	// dependency record of it says. A unit the patch does not change
	// itself is in the list for them alone.
	Headers []string
	// Pre and Post are the relocatable objects built from the pristine
	// and the patched file, with one section per function and data
	// object (.text.NAME, .data.NAME, ...).
	Pre, Post string
	// Command is the compiler command that built Post, run in Dir;
	// PreCommand built Pre and differs only in the file names.
	Command, PreCommand []string
	// Dir is the folder the commands run in: the tree's ObjDir.
	Dir string
	// Module is the module the unit is linked into, or "" when it is
	// built into vmlinux.
	Module string
	// After is what kbuild runs after the compiler for this unit (objtool),
	// verbatim from the .cmd file. Compile runs its objtool step on Pre
	// and Post as kbuild does, so both carry the ORC unwind tables and
	// site lists the kernel's own object has.
	After string
}

// Cleanup removes the folder holding the objects.
func (u *Units) Cleanup() error {
	if u == nil || u.dir == "" {
		return nil
	}
	return os.RemoveAll(u.dir)
}

// Earlier is an update that the hosts run already, which a later patch
// is built on top of (create --patch --on-top-of).
type Earlier struct {
	// Name says which update it is in errors, e.g. its patch file.
	Name  string
	Patch *Patch
}

// Compile builds every compilation unit the patch touches twice, before
// and after the patch, exactly as the target kernel's build compiles it
// plus -ffunction-sections -fdata-sections. kbuild builds the pristine
// unit once in the object folder, which records its compiler command in
// O/dir/.file.o.cmd; both objects are then compiled with that command
// from copies in a temporary folder (the pristine file, and the patched
// one), so the source tree is never written and Pre and Post differ only
// by the patch. The original folder is on the quote include path, and
// __FILE__ and debug info name the original file. Progress lines and the
// compiler's messages go to log (nil means the Tree's log), with the
// copies named a/PATH and b/PATH as in the patch.
//
// A changed header (.h) is compiled into every unit of the configuration
// that reads it (see header.go for how they are found): the patched
// headers are written into the "after" folder at their paths in the
// tree, ahead of the originals on the include path, so that the after
// side of every unit reads them and the before side the originals. More
// than the tree's MaxHeaderUnits such units is refused (*HeaderError),
// as is a header no unit of the configuration reads (ErrHeaderUnused).
// The patch must apply exactly (see Apply) before anything is built.
func (t *Tree) Compile(ctx context.Context, patch *Patch, log io.Writer) (*Units, error) {
	return t.CompileOnTop(ctx, nil, patch, log)
}

// CompileOnTop is Compile for a patch made on top of earlier updates,
// applied in order: the "before" side of each unit is the pristine file
// with the earlier updates' changes to it, and the "after" side that
// plus the patch. A function that an earlier update replaced and the
// patch changes again is then compiled with both changes, and Pre and
// Post still differ only by the patch. The earlier updates' other files
// are not compiled: their functions stay with the earlier bundles. Each
// earlier patch is checked as the patch is (only .c files), and one
// that does not apply, to the source or on top of those before it, is
// an *ApplyError naming it.
func (t *Tree) CompileOnTop(ctx context.Context, earlier []Earlier, patch *Patch, log io.Writer) (*Units, error) {
	if log == nil {
		log = t.log
	}
	if log == nil {
		log = io.Discard
	}
	if patch == nil || len(patch.files) == 0 {
		return nil, errors.New("compile: no patch")
	}
	plan, err := t.planUnits(ctx, log, earlier, patch)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "splicefleet-units-")
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	units := &Units{dir: work, Headers: plan.headers, NotBuilt: plan.notBuilt, Kconfig: plan.kconfig}
	ok := false
	defer func() {
		if !ok {
			_ = units.Cleanup()
		}
	}()

	unlock, err := t.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()

	if err := t.kbuildUnits(ctx, log, plan); err != nil {
		return nil, err
	}
	if err := writeOverlay(work, plan.overlay); err != nil {
		return nil, err
	}
	for _, s := range plan.sources {
		u, err := t.compileUnit(ctx, log, work, s.path, s.before, s.after, plan.headers)
		if err != nil {
			return nil, err
		}
		units.List = append(units.List, u)
	}
	for _, r := range plan.readers {
		u, err := t.compileReader(ctx, log, work, r, plan.headers)
		if err != nil {
			return nil, err
		}
		if u != nil {
			units.List = append(units.List, *u)
		}
	}
	if len(plan.headers) > 0 && len(units.List) == 0 {
		return nil, fmt.Errorf("compile: %w: %s", ErrHeaderUnused, strings.Join(plan.headers, ", "))
	}
	ok = true
	return units, nil
}

// unitPlan is what a patch makes Compile build: the units it changes,
// the changed headers with the text the after side reads, and the other
// units that may read them.
type unitPlan struct {
	sources  []unitSource
	notBuilt []string // .c files of the patch the configuration does not build
	headers  []string
	overlay  map[string][]byte // header -> the text the after side reads
	readers  []string          // units that may read a changed header
	kconfig  []string          // notes on Kconfig changes left out
}

// planUnits reads the patched files and finds the units that may read a
// changed header.
func (t *Tree) planUnits(ctx context.Context, log io.Writer, earlier []Earlier, patch *Patch) (*unitPlan, error) {
	kconfig, err := t.kconfigNotes(patch)
	if err != nil {
		return nil, err
	}
	patched, err := t.unitSources(earlier, patch)
	if err != nil {
		return nil, err
	}
	p := &unitPlan{overlay: map[string][]byte{}, kconfig: kconfig}
	var changed []unitSource
	for _, u := range patched {
		if strings.HasSuffix(u.path, ".h") {
			p.overlay[u.path] = u.after
			p.headers = append(p.headers, u.path)
			changed = append(changed, u)
			continue
		}
		p.sources = append(p.sources, u)
	}
	if err := t.dropUnbuilt(ctx, log, p); err != nil {
		return nil, err
	}
	if len(p.headers) > 0 && len(earlier) > 0 {
		// The readers' before side would have to carry the earlier
		// updates too.
		return nil, fmt.Errorf("compile: %w: a header change (%s) on top of earlier updates is not supported yet",
			ErrUnsupportedFile, strings.Join(p.headers, ", "))
	}
	if len(changed) > 0 {
		cands, beside, err := t.headerCandidates(ctx, log, changed, patch)
		if err != nil {
			return nil, err
		}
		for _, b := range beside {
			text, err := readBounded(filepath.Join(t.Source, filepath.FromSlash(b)), MaxSourceSize)
			if err != nil {
				return nil, fmt.Errorf("compile: %w", err)
			}
			p.overlay[b] = text
		}
		for _, c := range cands {
			if !slices.ContainsFunc(p.sources, func(s unitSource) bool { return s.path == c }) && !slices.Contains(p.readers, c) {
				p.readers = append(p.readers, c)
			}
		}
		slices.Sort(p.readers)
	}
	if len(p.sources) == 0 && len(p.readers) == 0 {
		return nil, fmt.Errorf("compile: %w: %s", ErrHeaderUnused, strings.Join(p.headers, ", "))
	}
	if err := t.overlayRelatives(p.overlay); err != nil {
		return nil, err
	}
	return p, nil
}

// maxOverlayRelatives bounds the unchanged files overlayRelatives copies.
const maxOverlayRelatives = 256

// overlayRelatives copies into the overlay, unchanged, every file of the
// tree that a file of the overlay includes by a quoted name relative to
// its own folder ("../ntlmssp.h" in fs/smb/server/mgmt/user_session.h),
// and theirs in turn: the after side reads the overlay's copy of a
// changed header, and the compiler looks for such a name beside that
// copy first, where the original folder's neighbours are not.
func (t *Tree) overlayRelatives(overlay map[string][]byte) error {
	queue := slices.Sorted(maps.Keys(overlay))
	copied := 0
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		incs, _ := scanIncludeLines(bytes.NewReader(overlay[name]))
		for _, inc := range incs {
			if !inc.quote {
				continue
			}
			rel := path.Join(path.Dir(name), inc.name)
			if _, done := overlay[rel]; done || strings.HasPrefix(rel, "../") {
				continue
			}
			text, err := readBounded(filepath.Join(t.Source, filepath.FromSlash(rel)), MaxSourceSize)
			if errors.Is(err, fs.ErrNotExist) {
				continue // found elsewhere on the include path
			}
			if err != nil {
				return fmt.Errorf("compile: %w", err)
			}
			if copied++; copied > maxOverlayRelatives {
				return fmt.Errorf("compile: the changed files include more than %d files beside them", maxOverlayRelatives)
			}
			overlay[rel] = text
			queue = append(queue, rel)
		}
	}
	return nil
}

// dropUnbuilt takes out of the plan the .c files the configuration does
// not build, as kbuild itself says (configured): kbuild would compile
// such a file if asked, or fail to, but no object of the kernel holds
// its code. Without a built file and without a changed header, there
// is nothing to patch.
func (t *Tree) dropUnbuilt(ctx context.Context, log io.Writer, p *unitPlan) error {
	if len(p.sources) == 0 {
		return nil
	}
	var paths []string
	for _, s := range p.sources {
		paths = append(paths, s.path)
	}
	built, err := t.configured(ctx, log, paths)
	if err != nil {
		return err
	}
	var g *includeGraph
	kept := p.sources[:0]
	for _, s := range p.sources {
		if slices.Contains(built, s.path) {
			kept = append(kept, s)
			continue
		}
		// A .c file that a built one #includes is not an object of its
		// own, yet its code runs.
		if g == nil {
			if g, err = scanIncludes(t.Source, srcArch()); err != nil {
				return fmt.Errorf("compile: %w", err)
			}
		}
		readers, _, err := g.includers([]string{s.path}, maxIncludeClosure)
		if err != nil {
			return fmt.Errorf("compile: %s: %w: %v", s.path, ErrUnsupportedFile, err)
		}
		if len(readers) > 0 {
			if readers, err = t.configured(ctx, log, readers); err != nil {
				return err
			}
		}
		if len(readers) > 0 {
			// Its code is in the objects of the built files that include
			// it: it is compiled through each of them, as a header is.
			// The after side's copy of an includer finds the patched
			// text beside it (writeOverlay puts it at its path in the
			// tree, the folder of the includer's copy when it includes
			// it by a quoted relative name), the before side the
			// original through the original folder.
			if len(readers) > t.maxHeaderUnits {
				return fmt.Errorf("compile: %s: %w: it is #included by %d units the configuration builds, more than the limit of %d",
					s.path, ErrHeaderTooWide, len(readers), t.maxHeaderUnits)
			}
			through := "them"
			if len(readers) == 1 {
				through = "it"
			}
			fmt.Fprintf(log, "ksrc: %s is #included by %s, which the configuration builds: compiled through %s\n",
				s.path, strings.Join(readers, ", "), through)
			p.headers = append(p.headers, s.path)
			p.overlay[s.path] = s.after
			for _, r := range readers {
				if !slices.Contains(p.readers, r) {
					p.readers = append(p.readers, r)
				}
			}
			continue
		}
		p.notBuilt = append(p.notBuilt, s.path)
		fmt.Fprintf(log, "ksrc: %s: not built by this configuration: nothing of it runs, so it is not compiled\n", s.path)
	}
	p.sources = kept
	// An includer that the patch changes too is compiled as its source.
	p.readers = slices.DeleteFunc(p.readers, func(r string) bool {
		return slices.ContainsFunc(p.sources, func(s unitSource) bool { return s.path == r })
	})
	if len(p.sources) == 0 && len(p.headers) == 0 {
		return fmt.Errorf("compile: %w: %s", ErrNotBuilt, strings.Join(p.notBuilt, ", "))
	}
	return nil
}

// kbuildUnits builds every planned unit through kbuild once, in one make
// (each make rechecks prepare first), so that kbuild records their
// compiler commands and dependencies.
func (t *Tree) kbuildUnits(ctx context.Context, log io.Writer, p *unitPlan) error {
	var targets []string
	for _, s := range p.sources {
		targets = append(targets, t.objectOf(s.path))
	}
	for _, r := range p.readers {
		targets = append(targets, objectOf(r))
	}
	start := time.Now()
	fmt.Fprintf(log, "ksrc: building %s through kbuild to learn the compiler commands…\n", strings.Join(targets, " "))
	if err := t.make(ctx, log, targets...); err != nil {
		return fmt.Errorf("compile: make %s: %w (a file that other files #include cannot be a unit)", strings.Join(targets, " "), err)
	}
	fmt.Fprintf(log, "ksrc: kbuild done in %.1fs\n", time.Since(start).Seconds())
	return nil
}

// writeOverlay puts the patched headers, and the unchanged ones that
// include them from beside them, where the after side's include path
// finds them first.
func writeOverlay(work string, overlay map[string][]byte) error {
	for name, text := range overlay {
		dst := filepath.Join(work, "b", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("compile: %w", err)
		}
		if err := os.WriteFile(dst, text, 0o644); err != nil {
			return fmt.Errorf("compile: %w", err)
		}
	}
	return nil
}

// compileReader compiles a unit the patch does not touch, which may read
// a changed header: nil when kbuild's dependency record says it does not
// (the text includes the header, the preprocessor did not).
func (t *Tree) compileReader(ctx context.Context, log io.Writer, work, r string, headers []string) (*Unit, error) {
	obj := objectOf(r)
	cmd, err := readBounded(t.cmdFile(obj), maxCmdFileSize)
	if err != nil {
		return nil, fmt.Errorf("compile %s: kbuild's record of the command: %w", r, err)
	}
	read := depsNames(cmd, obj, t.Source, headers)
	if len(read) == 0 {
		return nil, nil
	}
	text, err := readBounded(filepath.Join(t.Source, filepath.FromSlash(r)), MaxSourceSize)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	fmt.Fprintf(log, "ksrc: %s reads %s\n", r, strings.Join(read, ", "))
	u, err := t.compileUnit(ctx, log, work, r, text, text, headers)
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// cmdFile is kbuild's record of how it built obj.
func (t *Tree) cmdFile(obj string) string {
	return filepath.Join(t.ObjDir, filepath.FromSlash(path.Dir(obj)), "."+path.Base(obj)+".cmd")
}

// unitSource is one unit's text before and after the patch.
type unitSource struct {
	path          string
	before, after []byte
}

// unitSources reads each file the patch touches from the source tree,
// applies the earlier updates' changes to it in order (the "before"
// text), then the patch (the "after" text). The source tree is only read.
func (t *Tree) unitSources(earlier []Earlier, patch *Patch) ([]unitSource, error) {
	files := slices.DeleteFunc(patch.Files(), isKconfig) // kconfigNotes judged them
	foreign, err := t.foreignObjects(files)
	if err != nil {
		return nil, err
	}
	t.foreign = foreign
	if err := checkUnits(slices.DeleteFunc(files, func(f string) bool { return foreign[f] != "" })); err != nil {
		return nil, err
	}
	if err := checkEarlier(earlier); err != nil {
		return nil, err
	}
	var out []unitSource
	for _, fp := range patch.files {
		if isKconfig(fp.Path) {
			continue
		}
		name := filepath.Join(t.Source, filepath.FromSlash(fp.Path))
		fi, err := os.Lstat(name)
		if err != nil {
			return nil, fmt.Errorf("compile: %s is not in the kernel source: %w", fp.Path, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("compile: %s in the kernel source is not a regular file", fp.Path)
		}
		before, err := readBounded(name, MaxSourceSize)
		if err != nil {
			return nil, fmt.Errorf("compile: %w", err)
		}
		if before, err = applyEarlier(before, earlier, fp.Path); err != nil {
			return nil, err
		}
		after, err := Apply(before, fp)
		if err != nil {
			var ae *ApplyError
			if errors.As(err, &ae) && len(earlier) > 0 {
				ae.OnTop = true
			}
			return nil, fmt.Errorf("compile: %w", err)
		}
		out = append(out, unitSource{fp.Path, before, after})
	}
	return out, nil
}

// checkEarlier checks the earlier updates a patch is made on top of: each
// has a patch, of C files only.
func checkEarlier(earlier []Earlier) error {
	for _, e := range earlier {
		if e.Patch == nil || len(e.Patch.files) == 0 {
			return fmt.Errorf("compile: earlier update %s: no patch", e.Name)
		}
		for _, f := range e.Patch.Files() {
			if !strings.HasSuffix(f, ".c") {
				return fmt.Errorf("compile: earlier update %s: %w: %s: an earlier update may change only C files", e.Name, ErrUnsupportedFile, f)
			}
		}
		if err := checkUnits(e.Patch.Files()); err != nil {
			return fmt.Errorf("earlier update %s: %w", e.Name, err)
		}
	}
	return nil
}

// applyEarlier applies the earlier updates' changes to the file at path,
// in order: the text the patch is made on top of.
func applyEarlier(text []byte, earlier []Earlier, path string) ([]byte, error) {
	for _, e := range earlier {
		efp := e.Patch.File(path)
		if efp == nil {
			continue
		}
		var err error
		if text, err = Apply(text, efp); err != nil {
			var ae *ApplyError
			if errors.As(err, &ae) {
				ae.Earlier = e.Name
			}
			return nil, fmt.Errorf("compile: %w", err)
		}
	}
	return text, nil
}

// checkUnits refuses files that are not C compilation units, naming them
// all in one error.
func checkUnits(files []string) error {
	var other []string
	for _, f := range files {
		top, _, _ := strings.Cut(f, "/")
		switch {
		case strings.HasSuffix(f, ".h") && (top == "tools" || top == "scripts" || top == "Documentation"):
			other = append(other, f+" (not kernel code)")
		case strings.HasSuffix(f, ".h"):
		case !strings.HasSuffix(f, ".c"):
			other = append(other, f)
		case top == "tools" || top == "scripts" || top == "Documentation":
			other = append(other, f+" (not kernel code, and no kernel Makefile builds an object from it)")
		}
	}
	if len(other) > 0 {
		return fmt.Errorf("compile: %w: %s: only C files and headers of the kernel (.c, .h) can be compiled into units",
			ErrUnsupportedFile, strings.Join(other, ", "))
	}
	return nil
}

// objectOf returns the object kbuild makes from a .c file.
func objectOf(src string) string {
	return strings.TrimSuffix(src, ".c") + ".o"
}

// compileUnit compiles one unit before and after from copies under work;
// a nil after compiles it once, unchanged, for both.
func (t *Tree) compileUnit(ctx context.Context, log io.Writer, work, rel string, before, after []byte, headers []string) (Unit, error) {
	u := Unit{Path: rel, Dir: t.ObjDir}
	obj := t.objectOf(rel)
	cmdFile := t.cmdFile(obj)
	b, err := readBounded(cmdFile, maxCmdFileSize)
	if err != nil {
		return u, fmt.Errorf("compile %s: kbuild's record of the command: %w", rel, err)
	}
	rec, err := parseCmdFile(b, obj)
	if err != nil {
		return u, fmt.Errorf("compile %s: %s: %w", rel, cmdFile, err)
	}
	u.Headers = depsNames(b, obj, t.Source, headers)
	for _, flag := range strings.Fields(kcflags) {
		if !slices.Contains(rec.argv, flag) {
			return u, fmt.Errorf("compile %s: the recorded command lacks %s: kbuild did not take KCFLAGS", rel, flag)
		}
	}
	if slices.Contains(rec.argv, "-DMODULE") {
		u.Module = "unknown"
		for _, a := range rec.argv {
			if name, ok := strings.CutPrefix(a, "-DKBUILD_MODNAME="); ok {
				u.Module = strings.Trim(name, `"`)
			}
		}
	}
	u.After = rec.after
	origDir := filepath.Join(t.Source, filepath.FromSlash(path.Dir(rel)))

	for _, side := range []struct {
		name, dir, label string
		text             []byte
		obj              *string
		argv             *[]string
	}{
		{"before", "a", "pre", before, &u.Pre, &u.PreCommand},
		{"after", "b", "post", after, &u.Post, &u.Command},
	} {
		if side.dir == "b" && after == nil {
			// An unchanged unit (CompileCallers): one object serves as
			// both.
			u.Post, u.Command = u.Pre, u.PreCommand
			break
		}
		srcRoot := filepath.Join(work, side.dir)
		src := filepath.Join(srcRoot, filepath.FromSlash(rel))
		out := filepath.Join(work, side.label, filepath.FromSlash(obj))
		for _, d := range []string{filepath.Dir(src), filepath.Dir(out)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return u, fmt.Errorf("compile %s: %w", rel, err)
			}
		}
		if err := os.WriteFile(src, side.text, 0o644); err != nil {
			return u, fmt.Errorf("compile %s: %w", rel, err)
		}
		argv, err := unitCommand(rec, src, out, srcRoot, origDir, t.Source, side.dir == "b" && len(headers) > 0, headers...)
		if err != nil {
			return u, fmt.Errorf("compile %s: %s: %w", rel, cmdFile, err)
		}
		start := time.Now()
		fmt.Fprintf(log, "ksrc: compiling %s (%s)…\n", rel, side.name)
		rewrite := []string{srcRoot + "/", side.dir + "/"}
		if err := run(ctx, t.ObjDir, log, rewrite, argv[0], argv[1:]...); err != nil {
			what := "the file before the patch"
			if side.name == "after" {
				what = "the patched file"
			}
			return u, fmt.Errorf("compile %s (%s the patch): %w; the messages name %s as %s/%s",
				rel, side.name, err, what, side.dir, rel)
		}
		if tool := objtoolCommand(rec.after, obj, out); tool != nil {
			if err := run(ctx, t.ObjDir, log, nil, tool[0], tool[1:]...); err != nil {
				return u, fmt.Errorf("compile %s (%s the patch): objtool: %w", rel, side.name, err)
			}
		}
		fmt.Fprintf(log, "ksrc: compiled %s (%s) in %.1fs\n", rel, side.name, time.Since(start).Seconds())
		*side.obj, *side.argv = out, argv
	}
	return u, nil
}

// objtoolCommand returns the objtool step of a unit's after-compile text
// with the object swapped for out, or nil when there is none.
func objtoolCommand(after, obj, out string) []string {
	for _, step := range strings.FieldsFunc(after, func(r rune) bool { return r == ';' || r == '&' || r == '|' }) {
		argv := strings.Fields(step)
		if len(argv) < 2 || path.Base(argv[0]) != "objtool" || argv[len(argv)-1] != obj {
			continue
		}
		argv[len(argv)-1] = out
		return argv
	}
	return nil
}
