package corpus

import (
	"regexp"
	"slices"
	"sort"
	"strings"
)

// MaxWith bounds the other units Widen puts together with one. A unit
// that needs more is measured as it is: its reason says what it lacks.
const MaxWith = 4

// MaxWidenRounds bounds how often Run widens one unit: each round adds
// the units the last build's first error named.
const MaxWidenRounds = 3

// missingRes read the names a failed build lacks from create's reason:
// gcc's errors for an undeclared function, variable, member or type, for
// a call or definition that no longer matches a changed prototype, and
// klpgen's for a symbol neither the patched object nor the running
// kernel has. gcc quotes with ' in the C locale and with ‘’ in others.
// A call through a member names an expression ('ops->syn_recv_sock'):
// its last identifier, the member, is the name.
var missingRes = []*regexp.Regexp{
	regexp.MustCompile(`implicit declaration of function ['‘]([A-Za-z_]\w*)['’]`),
	regexp.MustCompile(`['‘]([A-Za-z_]\w*)['’] undeclared`),
	regexp.MustCompile(`has no member named ['‘]([A-Za-z_]\w*)['’]`),
	regexp.MustCompile(`unknown type name ['‘]([A-Za-z_]\w*)['’]`),
	regexp.MustCompile(`too (?:many|few) arguments to function ['‘][^'’]*?([A-Za-z_]\w*)['’]`),
	regexp.MustCompile(`(?:conflicting types|redefinition) (?:for|of) ['‘]([A-Za-z_]\w*)['’]`),
	regexp.MustCompile(`symbol "([A-Za-z_]\w*)" is neither a symbol of`),
}

// MissingNames are the identifiers a refusal says the unit's build
// lacks, in the order it names them, each once.
func MissingNames(reason string) []string {
	type at struct {
		pos  int
		name string
	}
	var found []at
	for _, re := range missingRes {
		for _, m := range re.FindAllStringSubmatchIndex(reason, -1) {
			found = append(found, at{m[2], reason[m[2]:m[3]]})
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].pos < found[j].pos })
	var names []string
	for _, f := range found {
		if !slices.Contains(names, f.name) {
			names = append(names, f.name)
		}
	}
	return names
}

// Widen returns u put together with the other units of its update that
// hold what its build lacks, and their ids; none when no unit does, or
// when more than MaxWith would be needed.
//
// Grouping an update's hunks into fixes is a heuristic (see Group), and a
// fix of a stable update may build on another change of the same update
// (a helper it adds, a member, a renamed function). A unit that does not
// build alone is measured again together with:
//   - the units with a hunk anywhere that declares or defines a missing
//     identifier: a helper, member or type another change adds;
//   - failing those, the units with a hunk in one of its own files whose
//     lines name it: the rest of the same fix, split off by the
//     attribution (a function removed by one hunk and still called in a
//     hunk of the same file given to another change), or a local
//     declaration another hunk adds;
//   - failing those too, the units with a hunk in any other file whose
//     changed lines, or the line that leads them, name it: a header's
//     changed prototype or callback, or a static inline a header drops
//     for the definition the unit adds.
//
// The whole of each such unit comes along, not just the hunk, as a hot
// update carrying both fixes would. Each of those units is still
// measured by itself too; the record says which units it was measured
// with (Record.With).
func (u Unit) Widen(missing []string) (Unit, []string) {
	return u.widen(missing, false)
}

// WidenUsers returns u put together with the other units of its update
// whose added lines use what u adds and nothing of u's bundle uses
// (create's warning of an unreached added function), and their ids;
// none when no unit does, or more than MaxWith would. A fix that adds a
// helper and calls it from code a change grouped elsewhere (init code,
// say) is incomplete without that call: upstream, it came with it.
func (u Unit) WidenUsers(unreached []string) (Unit, []string) {
	return u.widen(unreached, true)
}

func (u Unit) widen(missing []string, users bool) (Unit, []string) {
	if u.g == nil || len(missing) == 0 {
		return u, nil
	}
	g := u.g
	own := map[hunkRef]bool{}
	fileIn := map[int]bool{}
	for _, r := range u.refs {
		own[r] = true
		fileIn[r.file] = true
	}
	self := slices.Index(g.ids, u.ID)
	var with []int
	add := func(r hunkRef) {
		gi, ok := g.owner[r]
		if !ok || gi == self || slices.Contains(with, gi) || slices.Contains(u.With, g.ids[gi]) {
			return
		}
		with = append(with, gi)
	}
	// For each name, the units that declare or define it; failing those,
	// the units whose hunks in the unit's files name it.
	for _, name := range missing {
		var defs, mentions, elsewhere []hunkRef
		for fi := range g.files {
			f := &g.files[fi]
			for hi := range f.Hunks {
				r := hunkRef{fi, hi}
				switch {
				case own[r]:
				case users:
					if containsIdent(added(&f.Hunks[hi]), name) && !hasName(g.decls[r], name) {
						defs = append(defs, r)
					}
				case hasName(g.decls[r], name):
					defs = append(defs, r)
				case fileIn[fi] && containsIdent(f.Hunks[hi].Changed(), name):
					mentions = append(mentions, r)
				case !fileIn[fi] && containsIdent(changedWithLead(&f.Hunks[hi]), name):
					elsewhere = append(elsewhere, r)
				}
			}
		}
		switch {
		case len(defs) > 0:
		case len(mentions) > 0:
			defs = mentions
		default:
			defs = elsewhere
		}
		for _, r := range defs {
			add(r)
		}
	}
	if len(with) == 0 || len(with) > MaxWith {
		return u, nil
	}
	refs := slices.Clone(u.refs)
	ids := make([]string, 0, len(with))
	for _, gi := range with {
		ids = append(ids, g.ids[gi])
		for _, r := range g.groups[gi] {
			if !slices.Contains(refs, r) {
				refs = append(refs, r)
			}
		}
	}
	w := refsUnit(u.ID, Change{Subject: u.Subject, CVEs: u.CVEs}, g.files, refs)
	w.Took, w.g, w.refs = u.Took, g, refs
	w.With = append(slices.Clone(u.With), ids...)
	return w, ids
}

// changedWithLead are a hunk's changed lines, each run of them with the
// context line before it: a declaration that spans lines (a callback's
// parameters) names what it declares on its first line, which a change
// to its parameters leaves as context.
func changedWithLead(h *Hunk) []string {
	var out []string
	for i, l := range h.Lines {
		if l == "" || l[0] != '-' && l[0] != '+' {
			continue
		}
		if i > 0 && strings.HasPrefix(h.Lines[i-1], " ") {
			out = append(out, h.Lines[i-1][1:])
		}
		out = append(out, l[1:])
	}
	return out
}

func hasName(d hunkDecls, name string) bool {
	_, ok := d.names[name]
	return ok
}

// added are a hunk's added lines, without their marks.
func added(h *Hunk) []string {
	var out []string
	for _, l := range h.Lines {
		if strings.HasPrefix(l, "+") {
			out = append(out, l[1:])
		}
	}
	return out
}

// unreachedRe reads create's warning of an added function nothing the
// bundle carries uses.
var unreachedRe = regexp.MustCompile(`function (\S+) of \S+ is added by the patch, but nothing the bundle carries calls it`)

// UnreachedNames are the functions create's output says the bundle adds
// and nothing it carries uses; a gcc clone (x.part.0, x.isra.0) is named
// by its source function.
func UnreachedNames(out string) []string {
	var names []string
	for _, m := range unreachedRe.FindAllStringSubmatch(out, -1) {
		n, _, _ := strings.Cut(m[1], ".")
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}
