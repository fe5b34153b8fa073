package ksrc

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/splicefleet/splicefleet/internal/bounded"
)

// Narrowing the readers of a changed header to its users. A unit whose
// text includes a changed header, yet mentions nothing the patch
// changes there, compiles the same before and after: its preprocessed
// text differs only in definitions it never uses. So before the limits
// are applied, changedDefs names the top-level definitions of the header
// that the hunks touch (a function, a struct, union or enum tag and an
// enum's enumerators, a typedef, a variable, a macro), closed over the
// header: a definition of the header that mentions one of them is
// changed with it. usersOf then keeps the units that mention one of the
// names, or include (through any chain of #includes, the changed header
// itself too) a file that does. Where the scanner cannot tell what a
// changed line defines (a conditional or #include line, a macro
// invocation that may make names with ##, text it cannot read), nothing
// is narrowed.

// forcedHeaders are the headers kbuild puts ahead of every unit with
// -include (the top Makefile's LINUXINCLUDE, scripts/Makefile.lib's
// c_flags): a name they mention reaches every unit.
var forcedHeaders = []string{"include/linux/compiler-version.h", "include/linux/kconfig.h", "include/linux/compiler_types.h"}

// maxMentionScan bounds the bytes read from one file for the names: the
// largest files of the tree are generated register headers (amdgpu's
// run to tens of megabytes); a larger file counts as mentioning them.
const maxMentionScan = 128 << 20

// changedDefs returns the names of the definitions a patch changes in a
// header, given its text before and after, or why it cannot tell.
func changedDefs(before, after []byte, fp *FilePatch) (names []string, why string) {
	pre, err := scanHeader(before)
	if err != nil {
		return nil, "the text before the patch: " + err.Error()
	}
	post, err := scanHeader(after)
	if err != nil {
		return nil, "the text after the patch: " + err.Error()
	}
	at, err := hunkPositions(before, fp)
	if err != nil {
		return nil, err.Error()
	}
	oldMarks, newMarks, shift := changedLines(fp, at)
	set := map[string]bool{}
	hit := [2]map[int]bool{{}, {}}
	for side, sc := range []*hdrScan{pre, post} {
		marks := oldMarks
		if side == 1 {
			marks = newMarks
		}
		for l := range marks {
			if why, ok := sc.opaque[l]; ok {
				return nil, fmt.Sprintf("line %d %s is %s", l, [2]string{"before the patch", "after the patch"}[side], why)
			}
			for _, i := range sc.owners[l] {
				it := sc.items[i]
				if it.kind == itemOpaque {
					return nil, fmt.Sprintf("line %d %s is in a macro invocation or text the scanner cannot read, "+
						"which may define names it cannot see", l, [2]string{"before the patch", "after the patch"}[side])
				}
				hit[side][i] = true
				for _, n := range it.names {
					set[n] = true
				}
			}
		}
	}
	// The other items must read the same on both sides: else a change
	// alters how the rest of the header reads (two definitions merged by
	// a removed line, a comment or a brace opened), which the changed
	// lines alone do not show.
	rest := func(sc *hdrScan, hit map[int]bool) []string {
		var out []string
		for i, it := range sc.items {
			if !hit[i] && !slices.ContainsFunc(it.names, func(n string) bool { return set[n] }) {
				out = append(out, it.text)
			}
		}
		return out
	}
	restPre, restPost := rest(pre, hit[0]), rest(post, hit[1])
	if !slices.Equal(restPre, restPost) {
		return nil, "the patch changes how the rest of the header reads (its untouched definitions differ)"
	}
	// A change of the line count moves __LINE__ in every function after
	// it (might_sleep, WARN_ON): they change too.
	if shift > 0 {
		for _, it := range post.items {
			if it.kind == itemDecl && it.body && it.last >= shift {
				for _, n := range it.names {
					set[n] = true
				}
			}
		}
	}
	// Close over the header: what mentions a changed name changes.
	for grew := true; grew; {
		grew = false
		for _, sc := range []*hdrScan{pre, post} {
			for _, it := range sc.items {
				if !mentionsAny(it.uses, set) {
					continue
				}
				if it.kind == itemOpaque {
					return nil, fmt.Sprintf("a macro invocation at line %d mentions a changed definition, "+
						"and what it defines is unknown", it.first)
				}
				if containsAll(set, it.names) {
					continue
				}
				for _, n := range it.names {
					set[n] = true
				}
				grew = true
			}
		}
	}
	for n := range set {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, ""
}

func mentionsAny(uses, names map[string]bool) bool {
	for n := range names {
		if uses[n] {
			return true
		}
	}
	return false
}

func containsAll(set map[string]bool, names []string) bool {
	for _, n := range names {
		if !set[n] {
			return false
		}
	}
	return true
}

// changedLines returns the lines (from 1) of the text before and after a
// patch that its hunks remove and add, given where each hunk applied
// (0-based, as Apply found it). shift is the first line after the patch
// where the line count changed, 0 when it did not.
func changedLines(fp *FilePatch, at []int) (oldMarks, newMarks map[int]bool, shift int) {
	oldMarks, newMarks = map[int]bool{}, map[int]bool{}
	delta := 0
	for hi, h := range fp.Hunks {
		o, n := at[hi], at[hi]+delta
		var removed, added int
		blockN := n
		flush := func() {
			if removed != added && shift == 0 {
				shift = blockN + 1
			}
			removed, added = 0, 0
		}
		for _, l := range h.Lines {
			switch l.Op {
			case '-':
				if removed+added == 0 {
					blockN = n
				}
				removed++
				o++
				oldMarks[o] = true
			case '+':
				if removed+added == 0 {
					blockN = n
				}
				added++
				n++
				newMarks[n] = true
			default:
				flush()
				o++
				n++
			}
		}
		flush()
		delta = n - o
	}
	return oldMarks, newMarks, shift
}

// mentions reports whether a file's text mentions one of names as an
// identifier outside comments (in a literal too: an asm template), or
// may make one by pasting (##) a piece that begins or ends it. A text
// the scanner cannot read mentions everything.
func mentions(text []byte, names []string) bool {
	paste := bytes.Contains(text, []byte("##"))
	if !paste && !slices.ContainsFunc(names, func(n string) bool { return bytes.Contains(text, []byte(n)) }) {
		return false
	}
	toks, err := lexC(text)
	if err != nil {
		return true
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	found := false
	tokIdents(toks, func(id string) { found = found || want[id] })
	if found || !paste {
		return found
	}
	// A macro's parameters stand for its arguments: the pieces are the
	// other identifiers next to a ##.
	var params map[string]bool
	for i, t := range toks {
		if t.kind == tHash && i+3 < len(toks) && toks[i+1].text == "define" && toks[i+3].text == "(" {
			params = map[string]bool{"__VA_ARGS__": true}
			for j := i + 4; j < len(toks) && toks[j].text != ")" && toks[j].kind != tEOD; j++ {
				params[toks[j].text] = true
			}
		}
		if t.text != "##" {
			continue
		}
		for _, j := range []int{i - 1, i + 1} {
			if j >= 0 && j < len(toks) && toks[j].kind == tIdent && !params[toks[j].text] && isPiece(toks[j].text, names) {
				return true
			}
		}
	}
	return false
}

// isPiece reports whether p, pasted to something, may make one of names:
// it begins or ends one, and has more than underscores.
func isPiece(p string, names []string) bool {
	if strings.Trim(p, "_") == "" {
		return false
	}
	for _, n := range names {
		if len(p) < len(n) && (strings.HasPrefix(n, p) || strings.HasSuffix(n, p)) {
			return true
		}
	}
	return false
}

// usersOf returns the units of cands (which include one of the changed
// headers) that can use one of names: the unit mentions one, or it
// includes, through any chain of #includes, a file other than the header
// the name is of that mentions one. A file with an #include of a macro
// (other than the trace event headers', which include again the header
// that included them) may read any file, and so mentions every name.
// names maps each changed header to the names of its changed definitions.
func (g *includeGraph) usersOf(root string, cands []string, names map[string][]string) ([]string, error) {
	var all []string
	for _, ns := range names {
		all = append(all, ns...)
	}
	fwd := map[string][]string{}
	closure := map[string]bool{}
	queue := append(slices.Clone(cands), forcedHeaders...)
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		if closure[f] {
			continue
		}
		if _, ok := g.files[f]; !ok {
			continue
		}
		closure[f] = true
		for _, inc := range g.files[f] {
			for _, h := range g.resolve(f, inc) {
				fwd[f] = append(fwd[f], h)
				queue = append(queue, h)
			}
		}
	}
	mention := map[string]bool{}
	for f := range closure {
		own, changed := names[f]
		check := all
		if changed {
			check = slices.DeleteFunc(slices.Clone(all), func(n string) bool { return slices.Contains(own, n) })
		}
		if g.macroInc[f] && !strings.HasPrefix(f, "include/trace/") {
			mention[f] = true
			continue
		}
		if len(check) == 0 {
			continue
		}
		text, err := readBounded(filepath.Join(root, filepath.FromSlash(f)), maxMentionScan)
		if errors.Is(err, bounded.ErrTooLarge) {
			mention[f] = true // unread, it may mention anything
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s for the changed definitions: %w", f, err)
		}
		if mentions(text, check) {
			mention[f] = true
		}
	}
	// A file reaches a mention when it is one or includes one that does.
	rev := map[string][]string{}
	for f, hs := range fwd {
		for _, h := range hs {
			rev[h] = append(rev[h], f)
		}
	}
	reach := map[string]bool{}
	queue = queue[:0]
	for f := range mention {
		queue = append(queue, f)
	}
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		if reach[f] {
			continue
		}
		reach[f] = true
		queue = append(queue, rev[f]...)
	}
	for _, h := range forcedHeaders {
		if reach[h] {
			return slices.Clone(cands), nil // every unit reads it
		}
	}
	var kept []string
	for _, c := range cands {
		if reach[c] {
			kept = append(kept, c)
		}
	}
	return kept, nil
}

// nameList shows names in a log line: the first few, then how many more.
func nameList(names []string) string {
	const show = 6
	if len(names) <= show {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:show], ", "), len(names)-show)
}
