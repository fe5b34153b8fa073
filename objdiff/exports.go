package objdiff

import (
	"bytes"
	"maps"
	"slices"
	"strings"
)

// kstrtabSection holds the names (and namespaces) of a unit's exports,
// NUL-terminated, which the export entries point at.
const kstrtabSection = "__ksymtab_strings"

// addedExports finds the export entries of added functions: a section
// ___ksymtab+NAME or ___ksymtab_gpl+NAME (include/linux/export.h's
// __KSYMTAB_ENTRY, one section per export) that only Post has, for a
// function NAME that only Post defines. It records them in
// Result.AddedExports and returns section name to function name.
//
// Such an entry is not a change to the running kernel's exports: no
// unpatched code knows NAME. A livepatch module cannot carry it (the
// module loader would export NAME from the livepatch module, which
// other modules' code would then bind to for good), so a bundle leaves
// it out, and only the bundle's own new code calls NAME.
func (c *comparison) addedExports(pre, post map[string][]*section) map[string]string {
	out := exportEntries(post, pre, c.res.Added)
	if len(out) > 0 {
		c.res.AddedExports = slices.Sorted(maps.Values(out))
	}
	return out
}

// removedExports finds the export entries of removed functions: a
// section ___ksymtab+NAME or ___ksymtab_gpl+NAME that only Pre has, for
// a function NAME that only Pre defines (a rename, or an API a fix
// retires). It records them in Result.RemovedExports and returns
// section name to function name.
//
// A livepatch removes nothing from the running kernel: NAME keeps its
// code and its export, unpatched, and modules already bound to it, or
// loaded later, keep calling it as they were built to. Only the code
// the bundle replaces stops calling it, as the patch says.
func (c *comparison) removedExports(pre, post map[string][]*section) map[string]string {
	out := exportEntries(pre, post, c.res.Removed)
	if len(out) > 0 {
		c.res.RemovedExports = slices.Sorted(maps.Values(out))
	}
	return out
}

// exportEntries returns, as section name to function name, the export
// entries of one side (sides) that the other side (others) lacks, each
// in a section of its own, for functions of fns: the added functions'
// entries in Post, or the removed functions' in Pre.
func exportEntries(sides, others map[string][]*section, fns []Function) map[string]string {
	out := map[string]string{}
	for name, secs := range sides {
		fn, ok := exportedBy(name)
		if !ok || len(secs) != 1 || len(others[name]) > 0 ||
			!slices.ContainsFunc(fns, func(f Function) bool { return f.Name == fn }) {
			continue
		}
		out[name] = fn
	}
	return out
}

// exportedBy returns the function whose export entry a section named
// name is (___ksymtab+NAME or ___ksymtab_gpl+NAME).
func exportedBy(name string) (string, bool) {
	if fn, ok := strings.CutPrefix(name, "___ksymtab+"); ok {
		return fn, true
	}
	return strings.CutPrefix(name, "___ksymtab_gpl+")
}

// isExportOf reports whether section is the export entry of fn.
func isExportOf(section, fn string) bool {
	got, ok := exportedBy(section)
	return ok && got == fn
}

// onlyNewExportStrings reports whether __ksymtab_strings changed only by
// the strings of added and removed exports. ___EXPORT_SYMBOL writes two
// strings for each export, its name and its namespace ("" for none):
// the strings only Pre has must be each removed export's name and the
// strings only Post has each added export's, besides namespaces, one
// for each of them that the other side does not share.
func (c *comparison) onlyNewExportStrings(pre, post []*section) bool {
	if len(c.res.AddedExports)+len(c.res.RemovedExports) == 0 || len(pre) > 1 || len(post) > 1 {
		return false
	}
	strs := func(secs []*section) []string {
		if len(secs) == 0 {
			return nil
		}
		return cStrings(secs[0].data)
	}
	// minus is a - b, as multisets.
	minus := func(a, b []string) []string {
		count := map[string]int{}
		for _, s := range b {
			count[s]++
		}
		var out []string
		for _, s := range a {
			if count[s] > 0 {
				count[s]--
				continue
			}
			out = append(out, s)
		}
		return out
	}
	gone, extra := minus(strs(pre), strs(post)), minus(strs(post), strs(pre))
	gone = minus(gone, c.res.RemovedExports)
	extra = minus(extra, c.res.AddedExports)
	if len(minus(c.res.RemovedExports, strs(pre))) > 0 || len(minus(c.res.AddedExports, strs(post))) > 0 {
		return false // a name is not where it should be
	}
	if len(gone)-len(extra) != len(c.res.RemovedExports)-len(c.res.AddedExports) {
		return false
	}
	for _, ns := range slices.Concat(gone, extra) {
		if strings.ContainsFunc(ns, notIdentRune) {
			return false // not a namespace
		}
	}
	return true
}

// cStrings splits NUL-terminated strings; a last string without its NUL
// is kept, so a damaged section never compares equal by accident.
func cStrings(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			out = append(out, string(b)+"\x00unterminated")
			break
		}
		out = append(out, string(b[:i]))
		b = b[i+1:]
	}
	return out
}

// notIdentRune says whether r cannot be part of a C identifier, as an
// export's namespace is.
func notIdentRune(r rune) bool {
	return r != '_' && (r < '0' || r > '9') && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z')
}
