package objdiff

import (
	"bytes"
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
	added := map[string]bool{}
	for _, f := range c.res.Added {
		added[f.Name] = true
	}
	out := map[string]string{}
	for name, secs := range post {
		fn, ok := exportedBy(name)
		if !ok || len(secs) != 1 || len(pre[name]) > 0 || !added[fn] {
			continue
		}
		out[name] = fn
	}
	if len(out) > 0 {
		c.res.AddedExports = slices.Sorted(func(yield func(string) bool) {
			for _, fn := range out {
				if !yield(fn) {
					return
				}
			}
		})
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
// the strings of added exports: Post holds every string of Pre, and
// besides them exactly two for each added export, its name and its
// namespace ("" for none), as ___EXPORT_SYMBOL writes them.
func (c *comparison) onlyNewExportStrings(pre, post []*section) bool {
	if len(c.res.AddedExports) == 0 || len(pre) > 1 || len(post) != 1 {
		return false
	}
	count := map[string]int{}
	if len(pre) == 1 {
		for _, s := range cStrings(pre[0].data) {
			count[s]++
		}
	}
	var extra []string
	for _, s := range cStrings(post[0].data) {
		if count[s] > 0 {
			count[s]--
			continue
		}
		extra = append(extra, s)
	}
	for _, n := range count {
		if n > 0 {
			return false // a string of Pre is gone
		}
	}
	if len(extra) != 2*len(c.res.AddedExports) {
		return false
	}
	for _, fn := range c.res.AddedExports {
		i := slices.Index(extra, fn)
		if i < 0 {
			return false
		}
		extra = slices.Delete(extra, i, i+1)
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
