package main

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/splicefleet/splicefleet/klpgen"
	"github.com/splicefleet/splicefleet/ksrc"
	"github.com/splicefleet/splicefleet/objdiff"
	"github.com/splicefleet/splicefleet/splice"
)

// maxPatchFile bounds the source patch create --patch reads.
const maxPatchFile = 4 << 20

// createFromPatch is create --patch: it prepares the kernel source for the
// target's configuration (once; cached), compiles the unit the patch
// touches before and after it, diffs the two objects, generates a
// livepatch module for exactly the changed functions, builds it against
// the target's headers, and wraps it like create --source.
func createFromPatch(ctx context.Context, e *env, o *createOptions) error {
	start := time.Now()
	patch, err := readSourcePatch(o)
	if err != nil {
		return err
	}
	o.sourcePatch = patch.Digest()
	earlier, err := readEarlier(e, o)
	if err != nil {
		return err
	}
	tree, err := prepareTree(ctx, e, o)
	if err != nil {
		return err
	}
	prepared := time.Since(start)
	units, err := compileUnits(ctx, e, tree, earlier, patch)
	if err != nil {
		return err
	}
	defer func() { _ = units.Cleanup() }()
	var more []*ksrc.Units
	defer func() {
		for _, u := range more {
			_ = u.Cleanup()
		}
	}()
	callers := func(names, skip []string) (*ksrc.Units, error) {
		u, err := tree.CompileCallers(ctx, names, skip, e.stderr)
		if u != nil {
			more = append(more, u)
		}
		if err != nil {
			return nil, err
		}
		// The callers are compiled from the pristine tree: a caller an
		// earlier update changed would be replaced by its unfixed code.
		for _, c := range u.List {
			for _, ea := range earlier {
				if ea.Patch.File(c.Path) != nil {
					return nil, &refusal{fmt.Errorf("%s: %s calls %s, which cannot be redirected, and the earlier update %s changes it: "+
						"the callers of such a function are compiled without the earlier updates, so replacing them would undo that update's change there",
						o.patch, c.Path, strings.Join(names, ", "), ea.Name)}
				}
			}
		}
		return u, nil
	}
	gen, err := generateModule(e, o, tree.Release, patch, units, callers)
	if err != nil {
		return err
	}
	gen.describe(e)
	built, module, err := buildGenerated(ctx, e, o, gen)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "built %s from %s: replaces %s in %s; %d bytes; %.1fs (tree preparation %.1fs)\n",
		built.File, o.patch, strings.Join(gen.changed, ", "), strings.Join(gen.paths, ", "), len(module), time.Since(start).Seconds(), prepared.Seconds())
	return wrapModule(e, o, fmt.Sprintf("%s (generated from %s)", built.File, o.patch), module)
}

// readSourcePatch reads and parses the source patch (--patch, or the text
// given in its place); a patch that does not parse is a refusal.
func readSourcePatch(o *createOptions) (*ksrc.Patch, error) {
	raw := o.patchText
	if raw == nil {
		var err error
		if raw, err = readFile(o.patch, maxPatchFile); err != nil {
			return nil, err
		}
	}
	patch, err := ksrc.ParsePatch(raw)
	if err != nil {
		return nil, &refusal{fmt.Errorf("%s: %w", o.patch, err)}
	}
	return patch, nil
}

// prepareTree prepares the kernel source for the target's configuration,
// or finds it prepared in the cache.
func prepareTree(ctx context.Context, e *env, o *createOptions) (*ksrc.Tree, error) {
	cache, err := createCacheDir(e, o.cacheDir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(e.stderr, "splicefleet: preparing %s for the configuration of %s (once; cached in %s)\n", o.kernelSource, o.kernelBuild, cache)
	return ksrc.Prepare(ctx, ksrc.Options{Source: o.kernelSource, KernelBuild: o.kernelBuild, CacheDir: cache, MaxHeaderUnits: o.maxHeaderUnits, Log: e.stderr})
}

// compileUnits compiles the files the patch touches before and after it,
// on top of the earlier updates;
// a patch that does not apply, or touches a file that cannot be
// compiled alone, is a refusal. The caller cleans the units up.
func compileUnits(ctx context.Context, e *env, tree *ksrc.Tree, earlier []ksrc.Earlier, patch *ksrc.Patch) (*ksrc.Units, error) {
	units, err := tree.CompileOnTop(ctx, earlier, patch, e.stderr)
	if err != nil {
		var ae *ksrc.ApplyError
		var he *ksrc.HeaderError
		switch {
		case errors.As(err, &he):
			for _, h := range he.Headers {
				fmt.Fprintf(e.stderr, "splicefleet: refused: header %s (%s): %v\n", h, hunkOf(patch.File(h), ""), ksrc.ErrHeaderTooWide)
			}
			if he.Units > 0 && len(he.Layout) == 0 {
				fmt.Fprintf(e.stderr, "splicefleet: --max-header-units %d would compile them all (%d units, each compiled by kbuild, then before and after the patch)\n", he.Units, he.Units)
			}
			return nil, &refusal{err}
		case errors.As(err, &ae) || errors.Is(err, ksrc.ErrUnsupportedFile) || errors.Is(err, ksrc.ErrHeaderUnused) || errors.Is(err, ksrc.ErrKconfig) ||
			errors.Is(err, ksrc.ErrNotBuilt):
			return nil, &refusal{err}
		}
		return nil, err
	}
	for _, n := range units.Kconfig {
		fmt.Fprintf(e.stderr, "splicefleet: %s\n", n)
	}
	for _, f := range units.NotBuilt {
		fmt.Fprintf(e.stderr, "splicefleet: %s: not built by this configuration: nothing of it runs, so the bundle leaves it out\n", f)
	}
	return units, nil
}

// generated is the livepatch module's source as klpgen wrote it, with
// what it replaces.
type generated struct {
	name    string         // the module's name
	out     *klpgen.Output // its sources, objects and make arguments
	changed []string       // the functions it replaces
	paths   []string       // the patched files that changed a function
}

// generateModule diffs each compiled file and generates its part of the
// module: its changed functions replace those of vmlinux or of the
// module it is built into. A patch that changes no function is a
// refusal.
func generateModule(e *env, o *createOptions, release string, patch *ksrc.Patch, units *ksrc.Units, callers compileCallers) (*generated, error) {
	syms, err := loadKernelSymbols(o, release)
	if err != nil {
		return nil, err
	}
	g := &generated{name: o.moduleName}
	if g.name == "" {
		g.name = defaultModuleName(o.id, o.version)
	}
	opts := klpgen.Options{ModuleName: g.name, Description: o.description, KernelFlags: true, PositionsByOrder: o.positionsByOrder}
	compared, bundle, err := compareUnits(e, o, release, patch, units, opts, callers)
	if err != nil {
		return nil, err
	}
	parts, err := generateParts(e, o, syms, compared, bundle)
	if err != nil {
		return nil, err
	}
	parts = g.keep(e, compared, parts)
	if len(parts) == 0 {
		var all []string
		for _, u := range units.List {
			all = append(all, u.Path)
		}
		return nil, &refusal{fmt.Errorf("%s changes the object code of no function in %s", o.patch, strings.Join(all, ", "))}
	}
	// A part keeps its file's number in its symbol names (unique, with
	// gaps where a file changed nothing); Combine names the objects.
	g.out = parts[0]
	if len(parts) > 1 {
		if g.out, err = klpgen.Combine(opts, parts); err != nil {
			return nil, &refusal{fmt.Errorf("%s: %w", o.patch, err)}
		}
	}
	// A new function beside the kernel's that nothing calls would drop
	// its change: the callers that pass the new arguments are not in
	// the bundle.
	for _, u := range g.out.Unreached {
		for _, c := range compared {
			if c.part.Part == u.Part && slices.Contains(c.part.Forked, u.Name) {
				if slices.ContainsFunc(c.diff.Changed, func(f objdiff.Function) bool { return f.Name == u.Name && f.Unredirectable }) {
					return nil, &refusal{fmt.Errorf("%s: %s: %s cannot be redirected (no __fentry__ call at its entry), and no function of the kernel or its modules "+
						"that the bundle could replace calls it: carried beside the kernel's copy, its change would reach no caller", o.patch, c.u.Path, u.Name)}
				}
				return nil, &refusal{fmt.Errorf("%s: %s: signature %s: its prototype changed, and no function the bundle replaces calls it: "+
					"the code that calls it with the new arguments is not in the patch, so carrying it beside the kernel's copy would carry nothing", o.patch, c.u.Path, u.Name)}
			}
		}
	}
	return g, nil
}

// compareUnits compares each compiled unit before and after the patch,
// keeping those whose functions or data changed, with what their new
// code adds that the other parts may use (the new exported helper of
// one module that the fix of another calls). A changed global function
// that livepatch cannot redirect, carried as a new function
// (objdiff's Function.Unredirectable), brings every unit of the
// configuration that may call it (callers), compiled unchanged, whose
// calling functions the bundle replaces.
func compareUnits(e *env, o *createOptions, release string, patch *ksrc.Patch, units *ksrc.Units, opts klpgen.Options, callers compileCallers) ([]*comparedPart, []klpgen.BundleSymbol, error) {
	mods := &moduleFiles{o: o, release: release}
	modSyms := map[string]*klpgen.Symbols{}
	modDeps := map[string]map[string]*klpgen.Symbols{}
	setup := func(i int, u ksrc.Unit) (klpgen.Options, error) {
		part := opts
		part.Part = i
		if u.Module == "" {
			return part, nil
		}
		// The kernel names a loaded module with "_" for kbuild's "-".
		part.Module = klpgen.KernelModuleName(u.Module)
		if modSyms[u.Module] == nil {
			var err error
			if modSyms[u.Module], err = mods.symbols(u.Module); err != nil {
				return part, err
			}
			// The modules it depends on, whose exports its code may
			// call: read from the same folder.
			if modDeps[u.Module], err = klpgen.LoadDependencies(part.Module, modSyms[u.Module], mods.read); err != nil {
				return part, err
			}
		}
		part.ModuleSymbols = modSyms[u.Module]
		part.Dependencies = modDeps[u.Module]
		fmt.Fprintf(e.stderr, "splicefleet: %s is built into module %s: the bundle patches it when it is loaded, now or later\n", u.Path, part.Module)
		return part, nil
	}
	var all []*comparedPart
	for i, u := range units.List {
		part, err := setup(i, u)
		if err != nil {
			return nil, nil, err
		}
		// The hunks that may name a symbol: the file's own, then those of
		// the changed headers it reads.
		var fps []*ksrc.FilePatch
		if fp := patch.File(u.Path); fp != nil {
			fps = append(fps, fp)
		}
		for _, h := range u.Headers {
			fps = append(fps, patch.File(h))
		}
		if len(u.Headers) > 0 {
			fmt.Fprintf(e.stderr, "splicefleet: %s reads %s: compiled before and after the patch\n", u.Path, strings.Join(u.Headers, ", "))
		}
		c := &comparedPart{u: u, fps: fps, part: part, base: part}
		if err := comparePart(e, o, c); err != nil {
			return nil, nil, err
		}
		all = append(all, c)
	}
	if forks := unredirectable(all); len(forks) > 0 {
		more, err := compareCallers(e, o, units, all, forks, callers, setup)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, more...)
	}
	var compared []*comparedPart
	var bundle []klpgen.BundleSymbol
	for _, c := range all {
		if len(c.changed) == 0 && len(c.added) == 0 && len(c.part.NewData) == 0 {
			continue // no function of this file changed
		}
		adds, err := klpgen.BundleAdds(c.post, c.added, c.part)
		if err != nil {
			return nil, nil, err
		}
		bundle = append(bundle, adds...)
		compared = append(compared, c)
	}
	if err := checkForked(o, compared, all); err != nil {
		return nil, nil, err
	}
	return compared, bundle, nil
}

// compileCallers compiles, unchanged, the units of the configuration
// that may call names, leaving out skip (ksrc's Tree.CompileCallers).
type compileCallers func(names, skip []string) (*ksrc.Units, error)

// unredirectable lists the changed global functions of the compared
// units that the bundle carries as new functions because livepatch
// cannot redirect the kernel's copy.
func unredirectable(all []*comparedPart) []string {
	var names []string
	for _, c := range all {
		if c.diff == nil {
			continue
		}
		for _, f := range c.diff.Changed {
			if f.Unredirectable && !slices.Contains(names, f.Name) {
				names = append(names, f.Name)
			}
		}
	}
	return names
}

// compareCallers makes the bundle replace every function that calls
// forks: the compared units that refer to one are compared again, taking
// their callers as changed, and every other unit of the configuration
// that may call one is compiled and compared the same way.
func compareCallers(e *env, o *createOptions, units *ksrc.Units, all []*comparedPart, forks []string, callers compileCallers,
	setup func(int, ksrc.Unit) (klpgen.Options, error)) ([]*comparedPart, error) {
	fmt.Fprintf(e.stderr, "splicefleet: %s cannot be redirected (no __fentry__ call at its entry: notrace, or its file is built without ftrace), "+
		"and is global: the bundle carries it as a new function, and replaces every function of the kernel and its modules that calls it, "+
		"so that their copies call the new one\n", strings.Join(forks, ", "))
	for _, c := range all {
		refers, err := refersTo(c.u.Post, forks)
		if err != nil {
			return nil, err
		}
		if !refers {
			continue
		}
		c.callersOf, c.part = forks, c.base
		if err := comparePart(e, o, c); err != nil {
			return nil, err
		}
	}
	if callers == nil {
		return nil, &refusal{fmt.Errorf("%s: %s cannot be redirected, and the units that may call it cannot be compiled here", o.patch, strings.Join(forks, ", "))}
	}
	var skip []string
	for _, u := range units.List {
		skip = append(skip, u.Path)
	}
	more, err := callers(forks, skip)
	if err != nil {
		if errors.Is(err, ksrc.ErrTooManyCallers) {
			return nil, &refusal{fmt.Errorf("%s: %s cannot be redirected, so every function that calls it must be replaced: %w", o.patch, strings.Join(forks, ", "), err)}
		}
		return nil, err
	}
	var out []*comparedPart
	for j, u := range more.List {
		part, err := setup(len(units.List)+j, u)
		if err != nil {
			return nil, err
		}
		c := &comparedPart{u: u, part: part, base: part, callersOf: forks}
		if err := comparePart(e, o, c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// refersTo says whether an object has an undefined symbol named in
// names: code of its own that calls another object's function.
func refersTo(obj string, names []string) (bool, error) {
	f, err := elf.Open(obj)
	if err != nil {
		return false, err
	}
	defer func() { _ = f.Close() }()
	syms, err := f.Symbols()
	if err != nil {
		return false, fmt.Errorf("%s: %w", obj, err)
	}
	for _, s := range syms {
		if s.Section == elf.SHN_UNDEF && slices.Contains(names, s.Name) {
			return true, nil
		}
	}
	return false, nil
}

// checkForked refuses a global function carried as a new function
// beside the kernel's copy (objdiff's Function.Forked) when a unit of
// the bundle other than its own reaches it other than by a direct call
// from a function the bundle replaces: that reference would reach the
// kernel's copy, left in place, with the new arguments. all are every
// compiled unit, those that changed nothing included (a table of
// function pointers in one of them changes nothing, and still points
// at the kernel's copy). Every unit that can name the function is among
// them: it reads the header whose prototype changed, so it is compiled
// before and after.
func checkForked(o *createOptions, compared, all []*comparedPart) error {
	for _, c := range compared {
		for _, name := range c.part.Forked {
			i := slices.IndexFunc(c.diff.Changed, func(f objdiff.Function) bool { return f.Name == name })
			if i < 0 || c.diff.Changed[i].Binding == "local" {
				continue // a static one: no other unit can name it
			}
			for _, d := range all {
				if d == c {
					continue
				}
				why := d.diff.CallsFromReplaced(name)
				switch {
				case why == "":
				case c.diff.Changed[i].Unredirectable:
					return &refusal{fmt.Errorf("%s: %s: %s cannot be redirected, and %s reaches it other than by a call from a function the bundle replaces (%s): "+
						"carried as a new function beside the kernel's copy, that code would keep running the kernel's copy, without the change", o.patch, c.u.Path, name, d.u.Path, why)}
				default:
					return &refusal{fmt.Errorf("%s: %s: signature %s: its prototype changed, and %s reaches it other than by a call from a function the bundle replaces (%s): "+
						"carried as a new function beside the kernel's copy, that code would reach the kernel's copy with the new arguments", o.patch, c.u.Path, name, d.u.Path, why)}
				}
			}
		}
	}
	return nil
}

// keep records what the generated parts replace, and the files they
// come from, and returns the parts that replace something.
func (g *generated) keep(e *env, compared []*comparedPart, parts []*klpgen.Output) []*klpgen.Output {
	for i, c := range compared {
		if parts[i] == nil {
			continue
		}
		for _, f := range parts[i].Functions {
			switch {
			case f.Forked && slices.ContainsFunc(c.diff.Changed, func(d objdiff.Function) bool { return d.Name == f.Name && d.Unredirectable }):
				fmt.Fprintf(e.stderr, "splicefleet: %s: %s cannot be redirected, and only functions the bundle replaces call it: "+
					"the module carries it as a new function their copies call; the kernel's copy stays in place, and nothing calls it while the bundle is applied\n", c.u.Path, f.Name)
			case f.Forked:
				fmt.Fprintf(e.stderr, "splicefleet: %s: %s: its prototype changed, and only functions the bundle replaces call it after the patch: "+
					"the module carries it as a new function their copies call, and leaves the kernel's copy in place, unpatched, for the callers it leaves in place\n", c.u.Path, f.Name)
			case f.Private:
				fmt.Fprintf(e.stderr, "splicefleet: %s: %s cannot be redirected (it calls no __fentry__: notrace or noinstr), "+
					"and only functions the bundle replaces call it: the module carries it as a copy their copies call\n", c.u.Path, f.Name)
			}
			if !f.Added {
				g.changed = append(g.changed, f.Name)
			}
		}
		g.paths = append(g.paths, c.u.Path)
	}
	return slices.DeleteFunc(parts, func(p *klpgen.Output) bool { return p == nil })
}

// describe tells the user what the generated module does beyond
// replacing functions: klpgen's warnings, the symbols it reaches through
// livepatch relocations, and the replaced functions it tells apart by
// their kallsyms position.
func (g *generated) describe(e *env) {
	for _, w := range g.out.Warnings {
		fmt.Fprintf(e.stderr, "splicefleet: warning: %s\n", w)
	}
	for _, u := range g.out.Unreached {
		fmt.Fprintf(e.stderr, "splicefleet: warning: function %s of %s is added by the patch, but nothing the bundle carries calls it or takes its address: what uses it is not in the patch (init code, or another change)\n", u.Name, u.Object)
	}
	for _, s := range g.out.KLPSymbols {
		at := ""
		switch {
		case s.Section != "" && s.Pos > 0:
			at = fmt.Sprintf(" (exported by %s, a dependency of %s; kallsyms position %d in %s: the name is not unique there, and this is its global definition)", s.Object, s.Section, s.Pos, s.Object)
		case s.Section != "":
			at = fmt.Sprintf(" (exported by %s, a dependency of %s)", s.Object, s.Section)
		case s.Pos > 0:
			at = fmt.Sprintf(" (kallsyms position %d: the name is not unique, and this is the patched unit's)", s.Pos)
		}
		fmt.Fprintf(e.stderr, "splicefleet: %s reaches %s of %s%s through a livepatch relocation\n", g.name, s.Name, s.Object, at)
	}
	for _, b := range g.out.BundleRefs {
		fmt.Fprintf(e.stderr, "splicefleet: %s: a new %s of %s that the bundle adds is called from another object's new code: bound to its copy in %s\n",
			b.Name, kindOf(b), b.Object, g.name)
	}
	for _, f := range g.out.Functions {
		if f.Sympos > 0 {
			fmt.Fprintf(e.stderr, "splicefleet: %s replaces %s at kallsyms position %d: the name is not unique, and this is the patched unit's\n", g.name, f.Name, f.Sympos)
		}
	}
}

func kindOf(b klpgen.BundleSymbol) string {
	if b.Data {
		return "variable"
	}
	return "function"
}

// buildGenerated builds the generated module against the target's
// headers and finalizes it (its livepatch relocations); it returns the
// build and the module's bytes.
func buildGenerated(ctx context.Context, e *env, o *createOptions, g *generated) (*ksrc.BuiltModule, []byte, error) {
	dir, err := os.MkdirTemp("", "splicefleet-patch-")
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	// The folder shows what was generated; the build copies its sources
	// and writes the generated object (a build product it would skip) in.
	for name, data := range g.out.Files() {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return nil, nil, err
		}
	}
	built, err := ksrc.BuildModule(ctx, ksrc.BuildOptions{
		Source:      dir,
		KernelBuild: o.kernelBuild,
		ModuleName:  g.name,
		Strip:       o.strip,
		MakeArgs:    g.out.MakeArgs,
		Files:       g.out.Files(),
	}, e.stderr)
	if err != nil {
		return nil, nil, err
	}
	module, err := klpgen.Finalize(built.Module)
	if err != nil {
		return nil, nil, fmt.Errorf("finalize %s: %w", built.File, err)
	}
	return built, module, nil
}

// readEarlier reads the --on-top-of patches, in order, and records each
// one's digest for the manifest.
func readEarlier(e *env, o *createOptions) ([]ksrc.Earlier, error) {
	var earlier []ksrc.Earlier
	seen := map[string]string{o.sourcePatch: o.patch}
	for _, name := range o.onTopOf {
		raw, err := readFile(name, maxPatchFile)
		if err != nil {
			return nil, err
		}
		p, err := ksrc.ParsePatch(raw)
		if err != nil {
			return nil, &refusal{fmt.Errorf("--on-top-of %s: %w", name, err)}
		}
		d := p.Digest()
		if other, ok := seen[d]; ok {
			return nil, &refusal{fmt.Errorf("--on-top-of %s: the same change as %s", name, other)}
		}
		seen[d] = name
		earlier = append(earlier, ksrc.Earlier{Name: name, Patch: p})
		o.earlier = append(o.earlier, splice.UpdateRef{SourcePatch: d, Name: filepath.Base(name)})
		fmt.Fprintf(e.stderr, "splicefleet: built on top of %s (%s, source patch %s): hosts apply this bundle only where that update is applied\n",
			name, strings.Join(p.Files(), ", "), d[:16])
	}
	return earlier, nil
}

// comparedPart is one compiled file compared before and after the
// patch, with what it changes and adds.
type comparedPart struct {
	u              ksrc.Unit
	fps            []*ksrc.FilePatch
	part           klpgen.Options
	base           klpgen.Options // part before takeDiff filled it in
	callersOf      []string       // objdiff.Options.CallersOf
	post           []byte
	changed, added []string
	diff           *objdiff.Result
}

// generateParts generates the livepatch module's part of each compared
// file (nil where it has none), each bound to what the others add
// (bundle). A file that changes no function but adds one is a part only
// when the new code of another part uses what it adds (a new helper one
// module exports and another calls); otherwise it is refused as before.
func generateParts(e *env, o *createOptions, syms *klpgen.Symbols, compared []*comparedPart, bundle []klpgen.BundleSymbol) ([]*klpgen.Output, error) {
	parts := make([]*klpgen.Output, len(compared))
	used := map[klpgen.BundleSymbol]bool{}
	generate := func(i int) error {
		c := compared[i]
		c.part.Bundle = bundle
		out, err := generatePart(e, o, c.u, c.fps, c.post, c.changed, c.added, syms, c.part)
		if err != nil {
			return err
		}
		parts[i] = out
		for _, b := range out.BundleRefs {
			used[b] = true
		}
		return nil
	}
	for i, c := range compared {
		if len(c.changed) > 0 {
			if err := generate(i); err != nil {
				return nil, err
			}
		}
	}
	// Parts that only add, as long as another part's code uses them.
	for more := true; more; {
		more = false
		for i, c := range compared {
			if parts[i] != nil || !slices.ContainsFunc(bundle, func(b klpgen.BundleSymbol) bool { return b.Part == c.part.Part && used[b] }) {
				continue
			}
			if err := generate(i); err != nil {
				return nil, err
			}
			fmt.Fprintf(e.stderr, "splicefleet: %s changes no function, but adds what the new code of other files calls: its part of the bundle only carries it\n", c.u.Path)
			more = true
		}
	}
	for i, c := range compared {
		if parts[i] == nil {
			return nil, &refusal{fmt.Errorf("%s: %s adds functions or variables but changes no function that would use them", o.patch, c.u.Path)}
		}
	}
	return parts, nil
}

// comparePart compares one compiled file before and after the patch,
// says on stderr what changed and what is left out or carried, and
// records in c the object after the patch with its changed and added
// functions (its new variables go into c.part.NewData) and the
// comparison, or returns the refusal.
func comparePart(e *env, o *createOptions, c *comparedPart) error {
	u, fps, part := c.u, c.fps, &c.part
	pre, err := readFile(u.Pre, int64(objdiff.MaxObjectSize))
	if err != nil {
		return err
	}
	post, err := readFile(u.Post, int64(objdiff.MaxObjectSize))
	if err != nil {
		return err
	}
	diff, err := objdiff.DiffWith(u.Path+" before", pre, u.Path+" after", post, objdiff.Options{Kernel: true, CallersOf: c.callersOf, InitRan: u.Module == ""})
	if err != nil {
		return err
	}
	if u.Module == "" {
		// vmlinux's init code ran at boot and was freed: a change that is
		// only its copies of functions the bundle replaces elsewhere
		// changes nothing that can still run (a module's init runs at
		// every load, and stays refused).
		for _, p := range diff.LeaveOutInit() {
			if p.Kind == objdiff.KindInit {
				fmt.Fprintf(e.stderr, "splicefleet: %s: init %s left out: it ran at boot and was freed, and its change is only its inlined copies of %s, which the bundle replaces where they run later\n",
					u.Path, p.Name, strings.Join(p.Inlined, ", "))
			} else {
				fmt.Fprintf(e.stderr, "splicefleet: %s: inline %s: its changed copies were only in init code left out; the bundle replaces its own code\n", u.Path, p.Name)
			}
		}
	}
	// Notes say what objdiff accepted although it refuses it in general
	// (a layout only the unit's stacks hold, a prototype only replaced
	// callers reach), or what it could not check.
	for _, n := range diff.Notes {
		fmt.Fprintf(e.stderr, "splicefleet: %s: note: %s\n", u.Path, n)
	}
	changed, added := takeDiff(e, u, diff, part)
	// Every unit the patch reaches is compiled before and after: its own
	// .c files, and every unit of the configuration that reads a changed
	// header. An inline function's changed copies are all in these
	// units, each in a function this bundle replaces.
	for _, p := range diff.CarryInlined() {
		fmt.Fprintf(e.stderr, "splicefleet: %s: inline %s changed: carried by replacing %s\n", u.Path, p.Name, strings.Join(p.Callers, ", "))
	}
	if u.Module != "" {
		for i, p := range diff.Unsafe {
			if p.Kind == objdiff.KindInit {
				diff.Unsafe[i].Reason += "; and " + u.Path + " is built into module " + part.Module +
					", whose init code runs at every load, after the livepatch patched the module's functions but never patched itself: a module loaded later would run the old init"
			}
		}
	}
	if err := diff.Err(); err != nil {
		var ue *objdiff.UnsafeError
		if errors.As(err, &ue) {
			for _, p := range ue.Problems {
				fmt.Fprintf(e.stderr, "splicefleet: refused: %s %s (%s): %s\n", p.Kind, p.Name, hunkOfAny(fps, p.Name), p.Reason)
			}
		}
		return &refusal{fmt.Errorf("%s: the patch cannot be carried by a livepatch: %w", o.patch, err)}
	}
	c.post, c.changed, c.added, c.diff = post, changed, added, diff
	return nil
}

// takeDiff says what changed and was added in one compiled file, and
// returns the functions its part replaces and adds; its new variables
// go into part.NewData, and how each changed function is reached into
// part.Private and part.Exposed.
func takeDiff(e *env, u ksrc.Unit, diff *objdiff.Result, part *klpgen.Options) (changed, added []string) {
	for _, f := range diff.Changed {
		fmt.Fprintf(e.stderr, "splicefleet: %s: %s changed (%s)\n", u.Path, f.Name, f.Reason)
		// Whether only replaced code calls it, for klpgen to carry a
		// function livepatch cannot redirect as a copy.
		switch {
		case f.Forked:
			part.Forked = append(part.Forked, f.Name)
		case f.Private:
			part.Private = append(part.Private, f.Name)
		case f.Exposed != "":
			if part.Exposed == nil {
				part.Exposed = map[string]string{}
			}
			part.Exposed[f.Name] = f.Exposed
		}
		name := f.Name
		if fn, ok := klpgen.ColdParent(name); ok && !slices.ContainsFunc(diff.Changed, func(g objdiff.Function) bool { return g.Name == fn }) {
			fmt.Fprintf(e.stderr, "splicefleet: %s: %s is the cold part gcc split off %s: the bundle replaces %s with it\n", u.Path, name, fn, fn)
			name = fn
		}
		if !slices.Contains(changed, name) {
			changed = append(changed, name)
		}
	}
	for _, f := range diff.Added {
		added = append(added, f.Name)
		fmt.Fprintf(e.stderr, "splicefleet: %s: %s added\n", u.Path, f.Name)
	}
	for _, name := range diff.AddedExports {
		fmt.Fprintf(e.stderr, "splicefleet: %s: %s is exported by the patch: the bundle does not carry the export (a livepatch module exports nothing to other modules); only the bundle's own new code calls it\n", u.Path, name)
	}
	for _, name := range diff.RemovedExports {
		fmt.Fprintf(e.stderr, "splicefleet: %s: %s is removed by the patch with its export: the running kernel keeps both, unpatched (a livepatch removes nothing), for the modules bound to it; the functions the bundle replaces no longer call it\n", u.Path, name)
	}
	for _, v := range diff.AddedData {
		part.NewData = append(part.NewData, v.Name)
		fmt.Fprintf(e.stderr, "splicefleet: %s: new variable %s (%d bytes): the module carries its only copy\n", u.Path, v.Name, v.Size)
	}
	return changed, added
}

// generatePart generates the livepatch module's part for one compiled
// file: its changed and added functions, with a copy of each function an
// earlier update (--on-top-of) added that the new code calls.
func generatePart(e *env, o *createOptions, u ksrc.Unit, fps []*ksrc.FilePatch, post []byte, changed, added []string, syms *klpgen.Symbols, part klpgen.Options) (*klpgen.Output, error) {
	out, err := klpgen.Generate(post, changed, added, syms, part)
	// A function an earlier update added (--on-top-of) is in that
	// update's module, not in the kernel: the new code that calls it
	// gets a copy of its own. Functions only: a copy of a variable
	// would not share the earlier module's value.
	for tries := 0; err != nil && len(o.earlier) > 0 && tries < 64; tries++ {
		var me *klpgen.MissingSymbolError
		if !errors.As(err, &me) || slices.Contains(added, me.Name) || !definesFunction(post, me.Name) {
			break
		}
		if slices.Contains(changed, me.Name) {
			return nil, &refusal{fmt.Errorf("%s: %s: %s changed, but it is not in the kernel: an earlier update added it, and its callers in that update's module would still call the copy there; add the new version under another name and change the callers that should call it, or make one update of both", o.patch, u.Path, me.Name)}
		}
		fmt.Fprintf(e.stderr, "splicefleet: %s: %s is not in the kernel (an earlier update added it): the module carries its own copy\n", u.Path, me.Name)
		added = append(added, me.Name)
		out, err = klpgen.Generate(post, changed, added, syms, part)
	}
	if err != nil {
		var de *klpgen.DependencyError
		var be *klpgen.BundleDependencyError
		switch {
		case errors.As(err, &de):
			fmt.Fprintf(e.stderr, "splicefleet: refused: symbol %s (%s): exported by module %s, which %s cannot reach: %s\n",
				de.Name, hunkOfAny(fps, de.Name), de.Exporter, de.Module, de.Reason)
		case errors.As(err, &be):
			fmt.Fprintf(e.stderr, "splicefleet: refused: symbol %s (%s): added by the bundle to %s, which the new code of %s cannot use: %s\n",
				be.Name, hunkOfAny(fps, be.Name), be.Adder, be.Object, be.Reason)
		}
		return nil, &refusal{fmt.Errorf("%s: %s: %w", o.patch, u.Path, err)}
	}
	return out, nil
}

// definesFunction reports whether the object defines a function name.
func definesFunction(obj []byte, name string) bool {
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		return false
	}
	syms, err := f.Symbols()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(syms, func(s elf.Symbol) bool {
		return s.Name == name && elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Section != elf.SHN_UNDEF && s.Section < elf.SHN_LORESERVE
	})
}

// moduleFiles finds the target's modules under --modules by name,
// indexing the folder once.
type moduleFiles struct {
	o       *createOptions
	release string
	dir     string
	index   map[string][]string // kernel name ("_" for "-") -> .ko paths
}

// find is the one .ko of module (kbuild's or the kernel's name).
func (m *moduleFiles) find(module string) (string, error) {
	if m.index == nil {
		m.dir = m.o.modulesDir
		if m.dir == "" {
			m.dir = filepath.Join("/lib/modules", m.release)
		}
		index := map[string][]string{}
		err := filepath.WalkDir(filepath.Join(m.dir, "kernel"), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if name, ok := strings.CutSuffix(d.Name(), ".ko"); ok && !d.IsDir() {
				index[klpgen.KernelModuleName(name)] = append(index[klpgen.KernelModuleName(name)], path)
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("--modules: the target's modules folder: %w (give /lib/modules/%s of the target, as its linux-image package installs it)", err, m.release)
		}
		m.index = index
	}
	found := m.index[klpgen.KernelModuleName(module)]
	switch {
	case len(found) == 0:
		return "", fmt.Errorf("--modules: no %s.ko under %s/kernel (compressed modules are not read yet)", module, m.dir)
	case len(found) > 1:
		return "", fmt.Errorf("--modules: %d files named %s.ko under %s/kernel: %s", len(found), module, m.dir, strings.Join(found, ", "))
	}
	return found[0], nil
}

// read is the .ko of module, bounded.
func (m *moduleFiles) read(module string) ([]byte, error) {
	path, err := m.find(module)
	if err != nil {
		return nil, err
	}
	return readFile(path, int64(objdiff.MaxObjectSize))
}

// symbols reads the symbols of the target's module named module
// (kbuild's name) from its .ko under --modules.
func (m *moduleFiles) symbols(module string) (*klpgen.Symbols, error) {
	ko, err := m.read(module)
	if err != nil {
		return nil, err
	}
	path, _ := m.find(module)
	syms, err := klpgen.LoadModuleSymbols(ko)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// The unstripped copy names the source file of each static symbol.
	rel, err := filepath.Rel(m.dir, path)
	if err != nil {
		return syms, nil
	}
	debug := filepath.Join(debugModulesDir(m.o.vmlinuxRead, m.release), rel)
	st, err := os.Stat(debug)
	if err != nil || !st.Mode().IsRegular() {
		return syms, nil
	}
	if inst, err := os.Stat(path); err == nil && os.SameFile(st, inst) {
		return syms, nil // the installed module itself: stripped
	}
	dko, err := readFile(debug, int64(objdiff.MaxObjectSize))
	if err != nil {
		return nil, err
	}
	if err := syms.LoadModuleSourceFiles(dko); err != nil {
		return nil, fmt.Errorf("%s (with %s): %w", debug, path, err)
	}
	return syms, nil
}

// debugModulesDir is where the unstripped modules of the -dbg package
// are: lib/modules/RELEASE of the debug tree (…/debug) whose
// boot/vmlinux-RELEASE create read, else /usr/lib/debug/lib/modules.
// A vmlinux elsewhere (a build folder's) says nothing of the modules.
func debugModulesDir(vmlinux, release string) string {
	boot := filepath.Dir(vmlinux)
	if debug := filepath.Dir(boot); filepath.Base(vmlinux) == "vmlinux-"+release && filepath.Base(boot) == "boot" && filepath.Base(debug) == "debug" {
		return filepath.Join(debug, "lib", "modules", release)
	}
	return filepath.Join("/usr/lib/debug/lib/modules", release)
}

// loadKernelSymbols reads the target's exported symbols (Module.symvers in
// the build folder) and every vmlinux symbol (System.map).
func loadKernelSymbols(o *createOptions, release string) (*klpgen.Symbols, error) {
	symvers, err := os.Open(filepath.Join(o.kernelBuild, "Module.symvers"))
	if err != nil {
		return nil, fmt.Errorf("--kernel-build: %w (the build folder's Module.symvers lists the exported symbols)", err)
	}
	defer symvers.Close()
	mapPath := o.systemMap
	if mapPath == "" {
		for _, p := range []string{filepath.Join(o.kernelBuild, "System.map"), "/boot/System.map-" + release} {
			if _, err := os.Stat(p); err == nil {
				mapPath = p
				break
			}
		}
	}
	if mapPath == "" {
		return nil, fmt.Errorf("no System.map for %s: give --system-map (it is /boot/System.map-%s in the linux-image package)", release, release)
	}
	sysmap, err := os.Open(mapPath)
	if err != nil {
		return nil, fmt.Errorf("--system-map: %w", err)
	}
	defer sysmap.Close()
	syms, err := klpgen.LoadSymbols(symvers, sysmap)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %w", symvers.Name(), mapPath, err)
	}
	if err := loadSourceFiles(o, release, mapPath, syms); err != nil {
		return nil, err
	}
	return syms, nil
}

// loadSourceFiles reads the source file of each repeated static symbol
// from the kernel's unstripped vmlinux: --vmlinux, or the first of the
// default places that holds one, and records which it read (the
// unstripped modules are beside it). Without it, a static symbol that
// other units share is refused unless --positions-by-order lets the
// symbols' order judge it.
func loadSourceFiles(o *createOptions, release, mapPath string, syms *klpgen.Symbols) error {
	p := o.vmlinux
	if p == "" {
		for _, c := range []string{filepath.Join(filepath.Dir(mapPath), "vmlinux-"+release), filepath.Join(o.kernelBuild, "vmlinux"),
			"/usr/lib/debug/boot/vmlinux-" + release} {
			if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
				p = c
				break
			}
		}
		if p == "" {
			return nil
		}
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("--vmlinux: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("--vmlinux: %w", err)
	}
	if err := syms.LoadSourceFiles(f, st.Size()); err != nil {
		return fmt.Errorf("%s (with %s): %w", p, mapPath, err)
	}
	o.vmlinuxRead = p
	return nil
}

var notModuleChar = regexp.MustCompile(`[^A-Za-z0-9_]`)

// defaultModuleName names a generated module after its patch id and
// version, so that every version gets a name of its own.
func defaultModuleName(id string, version uint64) string {
	suffix := fmt.Sprintf("_v%d", version)
	base := "lp_" + notModuleChar.ReplaceAllString(id, "_")
	return base[:min(len(base), 55-len(suffix))] + suffix
}

// createCacheDir is where prepared kernel trees are kept: --cache-dir, or
// $XDG_CACHE_HOME/splicefleet, or ~/.cache/splicefleet.
func createCacheDir(e *env, flag string) (string, error) {
	dir := flag
	if dir == "" {
		if x := e.getenv("XDG_CACHE_HOME"); x != "" {
			dir = filepath.Join(x, "splicefleet")
		} else if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".cache", "splicefleet")
		} else {
			return "", errors.New("no cache folder: give --cache-dir")
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Abs(dir)
}

// hunkOfAny is hunkOf over several files: the first that has a hunk
// naming the symbol, else what hunkOf says of the first.
func hunkOfAny(fps []*ksrc.FilePatch, name string) string {
	for _, fp := range fps {
		if h := hunkOf(fp, name); strings.HasPrefix(h, "hunk ") {
			return h
		}
	}
	if len(fps) == 0 {
		return hunkOf(nil, name)
	}
	return hunkOf(fps[0], name)
}

// hunkOf names the hunk of fp that changes symbol name: the first whose
// changed lines name it, else the first whose section (the function
// diff -u names after @@) does, else the first whose context does (a
// changed array element under its declaration). A change that reaches the symbol only
// through a macro or a header names no hunk.
func hunkOf(fp *ksrc.FilePatch, name string) string {
	if fp == nil {
		return "no hunk of the patch names it"
	}
	word := regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\b`)
	describe := func(i int, h ksrc.Hunk) string {
		at := fmt.Sprintf("hunk %d of %s, @@ -%d,%d +%d,%d @@", i+1, fp.Path, h.OldStart, h.OldLines, h.NewStart, h.NewLines)
		if h.Section != "" {
			at += " " + strings.TrimSpace(h.Section)
		}
		return at
	}
	if name == "" && len(fp.Hunks) > 0 {
		return describe(0, fp.Hunks[0]) // the file as a whole: its first hunk
	}
	for i, h := range fp.Hunks {
		for _, l := range h.Lines {
			if l.Op != ' ' && word.MatchString(l.Text) {
				return describe(i, h)
			}
		}
	}
	for i, h := range fp.Hunks {
		if word.MatchString(h.Section) {
			return describe(i, h)
		}
	}
	for i, h := range fp.Hunks {
		for _, l := range h.Lines {
			if word.MatchString(l.Text) {
				return describe(i, h) // named in the hunk's context
			}
		}
	}
	return "no hunk of " + fp.Path + " names it; the change reaches it another way"
}
