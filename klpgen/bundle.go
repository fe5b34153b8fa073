package klpgen

import (
	"cmp"
	"debug/elf"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// BundleSymbol is a global function, or a new variable, that one part of
// a bundle adds (Options.Part): the running kernel has no copy of it, so
// the livepatch module's copy is the only one, and the code of the
// bundle's other parts that refers to it is bound to that copy (see
// Options.Bundle).
type BundleSymbol struct {
	// Name is its name in the patched source.
	Name string
	// Object is what the adding part patches: "vmlinux" or a module.
	Object string
	// Part is the adding part.
	Part int
	// Data is true for a new variable (Options.NewData), false for a
	// function.
	Data bool
}

// Symbol is the name of the copy in the livepatch module, global so that
// the other parts' objects link to it: the adding part's name for an
// added function (__klp_addN_NAME), __klp_varN_NAME for a variable.
func (b BundleSymbol) Symbol() string {
	part := ""
	if b.Part > 0 {
		part = strconv.Itoa(b.Part)
	}
	if b.Data {
		return "__klp_var" + part + "_" + cName(b.Name)
	}
	return "__klp_add" + part + "_" + cName(b.Name)
}

// BundleAdds lists what a part adds that the bundle's other parts may
// refer to: the functions of added and of opts.Forked (a changed function
// carried beside the kernel's copy: the bundle's callers of it in other
// parts must call the new one), and the variables of opts.NewData,
// that post defines as globals (a static one cannot be named from
// another unit). Give the lists of every part to each part as
// Options.Bundle.
func BundleAdds(post []byte, added []string, opts Options) ([]BundleSymbol, error) {
	_, st, err := readObject(post)
	if err != nil {
		return nil, fmt.Errorf("klpgen: bundle adds: %w", err)
	}
	var out []BundleSymbol
	for i := range st.syms {
		s := &st.syms[i]
		if !s.defined() || s.bind() == elf.STB_LOCAL {
			continue
		}
		switch {
		case s.typ() == elf.STT_FUNC && (slices.Contains(added, s.name) || slices.Contains(opts.Forked, s.name)):
			out = append(out, BundleSymbol{Name: s.name, Object: opts.target(), Part: opts.Part})
		case s.typ() == elf.STT_OBJECT && slices.Contains(opts.NewData, s.name):
			out = append(out, BundleSymbol{Name: s.name, Object: opts.target(), Part: opts.Part, Data: true})
		}
	}
	return out, nil
}

// shared are the entries of Options.Bundle this part adds.
func (o Options) shared() []BundleSymbol {
	var out []BundleSymbol
	for _, b := range o.Bundle {
		if b.Part == o.Part {
			out = append(out, b)
		}
	}
	return out
}

// isShared says this part's added function or new variable name is
// referred to by other parts, so its copy's symbol is global.
func (g *generator) isShared(name string, data bool) bool {
	return slices.ContainsFunc(g.opts.shared(), func(b BundleSymbol) bool { return b.Name == name && b.Data == data })
}

// copySharedData copies the new variables this part shares with the
// others, whether or not its own code uses them, before the relocations
// are followed.
func (g *generator) copySharedData() error {
	for _, b := range g.opts.shared() {
		if !b.Data {
			continue
		}
		idx := g.definedObject(b.Name)
		if idx < 0 {
			return invalid("new variable %s of the bundle is not defined in the object", b.Name)
		}
		s := &g.st.syms[idx]
		// The variable stands for itself in messages about its
		// initializer's references.
		owner := &function{name: b.Name, added: true, sym: idx, parts: []int{-1}}
		if _, err := g.copyNewData(owner, s); err != nil {
			return err
		}
	}
	return nil
}

// nameSharedData gives each shared variable's copy its global name.
func (g *generator) nameSharedData() {
	for _, b := range g.opts.shared() {
		if !b.Data {
			continue
		}
		s := &g.st.syms[g.definedObject(b.Name)]
		g.w.addSymbol(&outSym{name: b.Symbol(), typ: elf.STT_OBJECT, bind: elf.STB_GLOBAL,
			section: g.copies[int(s.shndx)], value: s.value, size: s.size})
	}
}

func (g *generator) definedObject(name string) int {
	for i := range g.st.syms {
		if s := &g.st.syms[i]; s.name == name && s.defined() && s.typ() == elf.STT_OBJECT {
			return i
		}
	}
	return -1
}

// bundleSymbol binds a reference to a global name that another part of
// the bundle adds to that part's copy in the livepatch module (ok false
// when no other part adds it). The binding is safe only when the adding
// object is loaded whenever the calling code can run, because the
// copy's own references into its module are livepatch relocations that
// the kernel applies only when that module loads: the same object, or
// vmlinux, or a module the caller's module depends on, directly or not.
func (g *generator) bundleSymbol(owner *function, name string, addend int64) (*outSym, int64, bool, error) {
	var cands []BundleSymbol
	for _, b := range g.opts.Bundle {
		if b.Name == name && b.Part != g.opts.Part {
			cands = append(cands, b)
		}
	}
	if len(cands) == 0 {
		return nil, 0, false, nil
	}
	target := g.opts.target()
	b := cands[0]
	if i := slices.IndexFunc(cands, func(b BundleSymbol) bool { return b.Object == target }); i >= 0 {
		b = cands[i]
	} else if len(cands) > 1 {
		var objs []string
		for _, c := range cands {
			objs = append(objs, c.Object)
		}
		return nil, 0, true, &UnsupportedError{Function: owner.name,
			Reason: fmt.Sprintf("%s is added by several parts of the bundle (for %v), and which one the code of %s would call cannot be told", name, objs, target)}
	}
	refuse := func(why string) error {
		return &BundleDependencyError{Name: name, Function: owner.name, Object: target, Adder: b.Object, Data: b.Data, Reason: why}
	}
	switch {
	case b.Object == target, b.Object == "vmlinux":
	case target == "vmlinux":
		return nil, 0, true, refuse(fmt.Sprintf("vmlinux's code runs whether or not %s is loaded, and the copy's references into %s are resolved only when %s loads",
			b.Object, b.Object, b.Object))
	default:
		paths, err := dependencyPaths(g.opts.Module, g.opts.ModuleSymbols, g.opts.Dependencies)
		if err != nil {
			return nil, 0, true, err
		}
		if paths[b.Object] == nil {
			return nil, 0, true, refuse(fmt.Sprintf("%s does not depend on %s (the depends of its .modinfo, transitively), so the kernel may run %s's patched code "+
				"while %s is not loaded, and the copy's references into %s are resolved only when %s loads: %s must be loaded before %s, which only a dependency ensures",
				target, b.Object, target, b.Object, b.Object, b.Object, b.Object, target))
		}
	}
	out := g.bundleRefs[b]
	if out == nil {
		out = g.w.addSymbol(&outSym{name: b.Symbol(), typ: elf.STT_NOTYPE, bind: elf.STB_GLOBAL})
		g.bundleRefs[b] = out
	}
	return out, addend, true, nil
}

func compareBundleSymbols(a, b BundleSymbol) int {
	return cmp.Or(cmp.Compare(a.Part, b.Part), strings.Compare(a.Name, b.Name), cmp.Compare(a.Object, b.Object))
}

// BundleDependencyError means new code of one object of the bundle
// refers to a function or variable that the part of another object
// adds, and that object may not be loaded whenever the code runs: the
// copy's own references into it would not be resolved yet.
type BundleDependencyError struct {
	// Name is the function or variable.
	Name string
	// Function is the changed or added function that refers to it.
	Function string
	// Object is what the referring code's part patches: "vmlinux" or a
	// module.
	Object string
	// Adder is what the adding part patches.
	Adder string
	// Data is true when Name is a variable.
	Data bool
	// Reason says why the reference cannot be bound.
	Reason string
}

func (e *BundleDependencyError) Error() string {
	kind := "function"
	if e.Data {
		kind = "variable"
	}
	return fmt.Sprintf("function %s: %s %q is added by this bundle's part for %s, which the new code of %s cannot use: %s",
		e.Function, kind, e.Name, e.Adder, e.Object, e.Reason)
}
