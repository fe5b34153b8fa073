package ksrc

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/splicefleet/splicefleet/internal/bounded"
)

// Narrowing the readers of a changed header to its users. A unit whose
// text includes a changed header, yet uses nothing the patch changes
// there, compiles the same before and after: its preprocessed text
// differs only in definitions it never uses. So before the limits are
// applied, changedDefs names the top-level definitions of the header
// that the hunks touch (a function, a struct, union or enum tag and an
// enum's enumerators, a typedef, a variable, a macro), closed over the
// header: a definition of the header that mentions one of them is
// changed with it. usersOf closes the names over the other headers the
// readers include the same way, and keeps the units that mention one,
// or include a file whose use of one it cannot follow. Where the scanner
// cannot tell what a changed line defines (a conditional or #include
// line, a macro invocation that may make names with ##, text it cannot
// read), nothing is narrowed, and the log says why.
//
// Known limits: a name made by pasting (##) pieces that are arguments
// written in another file than the macro, or literal pieces of one
// character or of underscores, is not seen; headers
// kbuild generates (asm-offsets.h from struct layouts) and -include
// flags of a folder's Makefile (the vDSO's) are not read, as the after
// side of the build does not regenerate or change them either;
// __COUNTER__ values a change shifts are not followed.

// forcedHeaders are the headers kbuild puts ahead of every unit with
// -include (the top Makefile's LINUXINCLUDE, scripts/Makefile.lib's
// c_flags): a name they mention reaches every unit.
var forcedHeaders = []string{"include/linux/compiler-version.h", "include/linux/kconfig.h", "include/linux/compiler_types.h"}

// maxMentionScan bounds the bytes read from one file for the names: the
// largest files of the tree are generated register headers (amdgpu's
// run to tens of megabytes); a larger file counts as mentioning them.
const maxMentionScan = 128 << 20

// changedDefs returns the names of the definitions a patch changes in a
// header, given its text before and after, or why it cannot tell. Under
// macros, the configuration's (nil: none judged), a change the
// preprocessor skips in every unit changes nothing (condition.go): a
// changed line in a skipped branch, or a conditional line whose outcome
// is known, when no definition that is read holds it.
func changedDefs(before, after []byte, fp *FilePatch, macros map[string]string) (names []string, why string) {
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
	oldMarks, newMarks, _ := changedLines(fp, at)
	var off, known [2]map[int]bool
	off[0], known[0] = condLines(before, macros)
	off[1], known[1] = condLines(after, macros)
	// skippedItem: every line of the item is in a branch the
	// preprocessor skips.
	skippedItem := func(side int, it cItem) bool {
		for l := it.first; l <= it.last; l++ {
			if !off[side][l] {
				return false
			}
		}
		return true
	}
	set := map[string]bool{}
	hit := [2]map[int]bool{{}, {}}
	for side, sc := range []*hdrScan{pre, post} {
		marks := oldMarks
		if side == 1 {
			marks = newMarks
		}
		for _, l := range slices.Sorted(maps.Keys(marks)) {
			if (off[side][l] || known[side][l]) && !slices.ContainsFunc(sc.owners[l], func(i int) bool { return !skippedItem(side, sc.items[i]) }) {
				continue // skipped under the configuration, or a conditional it judges
			}
			if why, ok := sc.opaque[l]; ok {
				return nil, fmt.Sprintf("line %d %s is %s", l, [2]string{"before the patch", "after the patch"}[side], why)
			}
			for _, i := range sc.owners[l] {
				it := sc.items[i]
				if it.kind == itemOpaque {
					return nil, fmt.Sprintf("line %d %s is in a macro invocation, a top-level asm or used definition, "+
						"or text the scanner cannot read: it may define names it cannot see, or reach every object", l,
						[2]string{"before the patch", "after the patch"}[side])
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
	// Items the configuration skips are not read, on either side.
	rest := func(side int, sc *hdrScan) []string {
		var out []string
		for i, it := range sc.items {
			if !hit[side][i] && !slices.ContainsFunc(it.names, func(n string) bool { return set[n] }) && !skippedItem(side, it) {
				out = append(out, it.text)
			}
		}
		return out
	}
	restPre, restPost := rest(0, pre), rest(1, post)
	if !slices.Equal(restPre, restPost) {
		return nil, "the patch changes how the rest of the header reads (its untouched definitions differ)"
	}
	// What the patch adds (a helper, a type) no unit could use before:
	// the units are not sought for it, nor what mentions it.
	for _, n := range newDecls(pre, post, hit[1]) {
		delete(set, n)
	}
	// A change of the line count moves __LINE__ in every function after
	// it, which changes nothing but the line numbers WARN_ON and
	// might_sleep print: a reader that uses only such a function keeps
	// the kernel's copy, which prints the old numbers. kpatch ignores
	// line-number-only changes for the same reason. (In a unit that is
	// compiled, objdiff still sees them.)
	// Close over the header: what mentions a changed name changes.
	for grew := true; grew; {
		grew = false
		for _, sc := range []*hdrScan{pre, post} {
			added, why := sc.closeOver(set)
			if why != "" {
				return nil, why
			}
			grew = grew || len(added) > 0
		}
	}
	for n := range set {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, ""
}

// newDecls returns the names that the changed items of post (hit)
// declare and that the header did not define before, in C declarations
// (a function, variable, type, tag or enumerator), not in macros. A unit
// the patch does not change cannot have used such a name as this
// header's definition: the identifier was undeclared where the unit
// wrote it (an error, with the kernel's -Werror=implicit-function-declaration),
// or the unit's own local, member, tag or static of that name, which the
// new declaration either leaves in force (scopes and member names are
// apart) or collides with at compile time. So the name changes no code
// of an unchanged unit, and seeking it would only find the unrelated
// locals and members that share it (a new dst_dev() of dst.h reached
// every file with a variable named dst_dev). A macro is another matter:
// it rewrites every token of its name, so a new macro still counts. A
// name that the text before mentions anywhere (an item, a macro, the
// arguments of a macro invocation that may define it) is not new.
func newDecls(pre, post *hdrScan, hit map[int]bool) []string {
	old := map[string]bool{}
	for _, it := range pre.items {
		for _, n := range it.names {
			old[n] = true
		}
		for n := range it.uses {
			old[n] = true
		}
	}
	for n := range pre.conds {
		old[n] = true
	}
	macro := map[string]bool{}
	for _, it := range post.items {
		if it.kind != itemDecl {
			for _, n := range it.names {
				macro[n] = true
			}
		}
	}
	var out []string
	for i, it := range post.items {
		if !hit[i] || it.kind != itemDecl {
			continue
		}
		for _, n := range it.names {
			if !old[n] && !macro[n] && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// closeOver adds to set the names of the items that mention one of it,
// until none is added, and returns those it added; or says why it
// cannot: an item that mentions one defines what the scanner cannot see
// (a macro invocation), or a conditional line tests one.
func (sc *hdrScan) closeOver(set map[string]bool) (added []string, why string) {
	for n, line := range sc.conds {
		if set[n] {
			return nil, fmt.Sprintf("the conditional at line %d tests %s, a changed definition", line, n)
		}
	}
	for grew := true; grew; {
		grew = false
		for _, it := range sc.items {
			if !mentionsAny(it.uses, set) {
				continue
			}
			if it.kind == itemOpaque {
				return nil, fmt.Sprintf("a macro invocation (or a top-level asm or used definition) at line %d "+
					"mentions a changed definition: what it defines is unknown, or it reaches every object", it.first)
			}
			for _, n := range it.names {
				if !set[n] {
					set[n] = true
					added = append(added, n)
					grew = true
				}
			}
		}
	}
	for n, line := range sc.conds {
		if set[n] {
			return nil, fmt.Sprintf("the conditional at line %d tests %s, a changed definition", line, n)
		}
	}
	return added, ""
}

func mentionsAny(uses, names map[string]bool) bool {
	for n := range names {
		if uses[n] {
			return true
		}
	}
	return false
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
	token, piece := mentionsHow(text, names)
	return token || piece
}

// mentionsHow is mentions, saying how: as a token, or as a piece that ##
// may paste into one (or the text cannot be read).
func mentionsHow(text []byte, names []string) (token, piece bool) {
	named := slices.ContainsFunc(names, func(n string) bool { return bytes.Contains(text, []byte(n)) })
	paste := bytes.Contains(text, []byte("##")) && pieceNearPaste(text, names)
	if !named && !paste {
		return false, false
	}
	toks, err := lexC(text)
	if err != nil {
		return false, true
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	tokIdents(toks, func(id string) { token = token || want[id] })
	if !paste {
		return token, false
	}
	// A paste a##b##c makes one name: its literal pieces in order, a
	// parameter of the macro standing for any text (its argument).
	var params map[string]bool
	var order []string // the parameters in order
	defAt, variadic := 0, false
	var calls [][]string // the arguments of a generator's invocations (localCalls)
	read, local := false, false
	var idx map[string][]identUse // built when a generator is first read
	seen := map[string]bool{}     // pasteMakes's answers by pattern
	for i, t := range toks {
		if t.kind == tHash && i+2 < len(toks) && toks[i+1].text == "define" {
			params, order, defAt, variadic, calls, read, local = nil, nil, i+2, false, nil, false, false
			if i+3 < len(toks) && toks[i+3].text == "(" {
				params = map[string]bool{"__VA_ARGS__": true}
				for j := i + 4; j < len(toks) && toks[j].text != ")" && toks[j].kind != tEOD; j++ {
					switch {
					case toks[j].kind == tIdent:
						params[toks[j].text] = true
						order = append(order, toks[j].text)
					case toks[j].text == ".":
						variadic = true
					}
				}
			}
		}
		if i+1 >= len(toks) || toks[i+1].text != "##" || (i > 0 && toks[i-1].text == "##") || memberPaste(toks, i) {
			continue
		}
		var chain []cTok
		for j := i; j < len(toks); j += 2 {
			chain = append(chain, toks[j])
			if j+1 >= len(toks) || toks[j+1].text != "##" {
				break
			}
		}
		if !pasteMakes(chain, params, names, seen) {
			continue
		}
		// It may make one with some argument; a generator's own
		// invocations tell which it does make.
		if params != nil && !variadic && !read {
			if idx == nil {
				idx = identIndex(toks)
			}
			calls, local = localCalls(toks, idx, defAt)
			read = true
		}
		if !local || slices.ContainsFunc(calls, func(args []string) bool { return pasteMade(chain, order, args, names) }) {
			return token, true
		}
	}
	return token, false
}

// pasteMakes reports whether the paste of chain may make one of names:
// its literal pieces, in order, with a parameter's argument for any
// text between them. A paste whose literal pieces are all of one
// character or of underscores is not counted: the name would come from
// arguments, written elsewhere (the limit narrow.go's comment states),
// and `inst##l##x` or `a##_##b` are everywhere. seen keeps the answers
// of one file by pattern (a generator's pastes repeat in every macro of
// its kind).
func pasteMakes(chain []cTok, params map[string]bool, names []string, seen map[string]bool) bool {
	var pat strings.Builder
	telling := false
	for _, t := range chain {
		switch {
		case t.kind == tIdent && params[t.text]:
			pat.WriteString(".*")
		case t.kind == tIdent || t.kind == tNum:
			if !slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, t.text) }) {
				return false // a piece no name holds: no regular expression needed
			}
			pat.WriteString(regexp.QuoteMeta(t.text))
			telling = telling || (len(t.text) >= 2 && strings.Trim(t.text, "_") != "")
		default:
			return false // , ##__VA_ARGS__ and the like: no name
		}
	}
	if !telling {
		return false
	}
	key := pat.String()
	if made, ok := seen[key]; ok {
		return made
	}
	made := true
	if re, err := regexp.Compile("^" + key + "$"); err == nil {
		made = slices.ContainsFunc(names, re.MatchString)
	}
	seen[key] = made
	return made
}

// localCalls reads a generator macro: a function-like macro, defined at
// toks[at] (its name), that the file #undefs after invoking it, as
// asm/io.h's BUILDIO makes outb_p, inw_p and their kind. Its only
// expansions are then its invocations in the file, and the names its
// pastes make are theirs alone: local says so, and calls holds each
// invocation's arguments, each one identifier, one number or nothing.
// Anything else (no #undef, an invocation inside another directive,
// whose arguments another macro's parameters may be, an #include between
// the #define and the #undef, whose file may invoke it, or an argument
// of several tokens) is not local, and a parameter stands for any text.
func localCalls(toks []cTok, idx map[string][]identUse, at int) (calls [][]string, local bool) {
	name := toks[at].text
	undef := -1
	for _, u := range idx[name] {
		switch {
		case u.at == at || u.directive == "ifdef" || u.directive == "ifndef":
		case u.directive == "undef":
			if u.at > at && undef < 0 {
				undef = u.at
			}
		case u.directive != "":
			// Another macro that names it may expand it with
			// arguments of its own.
			return nil, false
		}
	}
	if undef < 0 {
		return nil, false
	}
	// A file included between them may invoke it (an X-macro list).
	for _, kw := range []string{"include", "include_next"} {
		for _, u := range idx[kw] {
			if u.directive == kw && u.at > at && u.at < undef {
				return nil, false
			}
		}
	}
	for _, u := range idx[name] {
		if u.directive != "" || u.at < at || u.at > undef {
			continue
		}
		if u.at+1 >= len(toks) || toks[u.at+1].text != "(" {
			return nil, false
		}
		args, _, ok := callArgs(toks, u.at+1)
		if !ok {
			return nil, false
		}
		calls = append(calls, args)
	}
	return calls, true
}

// identUse is where an identifier occurs: its token's index, and the
// directive it sits in ("define", "undef", ...; "" outside one, "#"
// in a directive with no name).
type identUse struct {
	at        int
	directive string
}

// identIndex indexes the identifiers of a file's tokens, for localCalls.
func identIndex(toks []cTok) map[string][]identUse {
	idx := map[string][]identUse{}
	in, dir := false, ""
	for j, t := range toks {
		switch t.kind {
		case tHash:
			in, dir = true, "#"
			if j+1 < len(toks) && toks[j+1].kind == tIdent {
				dir = toks[j+1].text
			}
		case tEOD:
			in = false
		case tIdent:
			d := ""
			if in {
				d = dir
			}
			idx[t.text] = append(idx[t.text], identUse{at: j, directive: d})
		}
	}
	return idx
}

// callArgs reads the arguments of an invocation whose "(" is toks[open]:
// each must be one identifier or number, or empty. end is the index of
// the closing ")".
func callArgs(toks []cTok, open int) (args []string, end int, ok bool) {
	var cur []cTok
	flush := func() bool {
		switch {
		case len(cur) == 0:
			args = append(args, "")
		case len(cur) == 1 && (cur[0].kind == tIdent || cur[0].kind == tNum):
			args = append(args, cur[0].text)
		default:
			return false
		}
		cur = nil
		return true
	}
	for j := open + 1; j < len(toks); j++ {
		t := toks[j]
		switch {
		case t.kind == tHash || t.kind == tEOD || t.text == "(":
			return nil, 0, false
		case t.text == ",":
			if !flush() {
				return nil, 0, false
			}
		case t.text == ")":
			if !flush() {
				return nil, 0, false
			}
			return args, j, true
		default:
			cur = append(cur, t)
		}
	}
	return nil, 0, false
}

// pasteMade reports whether the paste of chain, in one invocation of a
// generator macro (localCalls) with these arguments for the parameters
// in order, makes one of names.
func pasteMade(chain []cTok, order, args []string, names []string) bool {
	var made strings.Builder
	for _, t := range chain {
		switch {
		case t.kind == tIdent && slices.Contains(order, t.text):
			k := slices.Index(order, t.text)
			if k >= len(args) {
				return true // fewer arguments than parameters: not read, so counted
			}
			made.WriteString(args[k])
		case t.kind == tIdent || t.kind == tNum:
			made.WriteString(t.text)
		default:
			return false
		}
	}
	return slices.Contains(names, made.String())
}

// pieceNearPaste is a quick look, before the text is read as tokens,
// for an identifier next to a ## that may be a piece of one of names.
func pieceNearPaste(text []byte, names []string) bool {
	for rest := text; ; {
		i := bytes.Index(rest, []byte("##"))
		if i < 0 {
			return false
		}
		l := bytes.TrimRight(rest[:i], " \t\\\r\n")
		start := len(l)
		for start > 0 && isIdentByte(l[start-1]) {
			start--
		}
		r := bytes.TrimLeft(rest[i+2:], " \t\\\r\n")
		end := 0
		for end < len(r) && isIdentByte(r[end]) {
			end++
		}
		for _, id := range [][]byte{l[start:], r[:end]} {
			if len(id) > 0 && isPiece(string(id), names) {
				return true
			}
		}
		rest = rest[i+2:]
	}
}

// memberPaste reports whether the paste toks[i] is part of names a
// member (s.stat##dev, p->x##y): no global definition.
func memberPaste(toks []cTok, i int) bool {
	for i >= 2 && toks[i-1].text == "##" {
		i -= 2
	}
	return i >= 1 && (toks[i-1].text == "." || (i >= 2 && toks[i-1].text == ">" && toks[i-2].text == "-"))
}

// isPiece reports whether p, next to a ##, may be a piece of one of
// names (see pasteMakes).
func isPiece(p string, names []string) bool {
	if len(p) < 2 || strings.Trim(p, "_") == "" {
		return false
	}
	return slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, p) })
}

// maxNameRounds bounds how many times usersOf reads the files again for
// the names other headers make from the changed ones; a change that
// spreads further than that keeps every reader.
const maxNameRounds = 6

// maxChangedNames bounds the changed and derived definitions usersOf
// looks for: every file of the closure is searched for every name, so
// a change that spreads to more (a member of a core struct named in
// every prototype that takes it) keeps every reader at once, and the
// limits that follow decide, rather than costing minutes of search.
const maxChangedNames = 400

// usersOf returns the units of cands (which include one of the changed
// headers) that can use a changed definition, and how many definitions
// of other headers were found made from them. names maps each changed
// header to the names of its changed definitions; texts holds its text
// before and after the patch.
//
// Every file of the include closure of cands (and of the headers kbuild
// forces into every unit) is read for the names. A header that mentions
// one is read as the changed header is: its definitions that mention a
// name add their own names, and the files are read again for those,
// until no name is added. A unit is kept when it mentions a name, or
// includes (through any chain of #includes, the changed headers too) a
// file whose use of a name the scanner cannot follow: a .c file, a
// header it cannot read, one whose macro invocation or conditional
// mentions a name, one that may make a name by pasting (##), one with an
// #include of a macro (but the trace event headers', which include again
// the header that included them).
func (g *includeGraph) usersOf(root string, cands []string, names map[string][]string, texts map[string][][]byte) (kept []string, derived int, err error) {
	set := map[string]bool{}
	for _, ns := range names {
		for _, n := range ns {
			set[n] = true
		}
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
	mention := map[string]bool{} // files whose includers are kept
	for f := range closure {
		if g.macroInc[f] && !strings.HasPrefix(f, "include/trace/") {
			mention[f] = true
		}
	}
	scans := map[string][]*hdrScan{}
	delta := slices.Collect(maps.Keys(set))
	start := len(set)
	for round := 0; len(delta) > 0; round++ {
		if round == maxNameRounds || len(set) > maxChangedNames {
			return slices.Clone(cands), len(set) - start, nil
		}
		slices.Sort(delta)
		var next []string
		for f := range closure {
			if mention[f] {
				continue
			}
			var sides [][]byte
			if t, ok := texts[f]; ok {
				sides = t
			} else {
				text, err := readBounded(filepath.Join(root, filepath.FromSlash(f)), maxMentionScan)
				if errors.Is(err, bounded.ErrTooLarge) {
					mention[f] = true // unread, it may mention anything
					continue
				}
				if err != nil {
					return nil, 0, fmt.Errorf("read %s for the changed definitions: %w", f, err)
				}
				sides = [][]byte{text}
			}
			for i, text := range sides {
				token, piece := mentionsHow(text, delta)
				if !token && !piece {
					continue
				}
				if piece || !strings.HasSuffix(f, ".h") {
					mention[f] = true
					break
				}
				if scans[f] == nil {
					scans[f] = make([]*hdrScan, len(sides))
				}
				if scans[f][i] == nil {
					// Scanned once per side, when it first mentions a
					// name (the other side may not).
					sc, err := scanHeader(text)
					if err != nil {
						mention[f] = true
						break
					}
					scans[f][i] = sc
				}
				added, why := scans[f][i].closeOver(set)
				if why != "" {
					mention[f] = true
					break
				}
				next = append(next, added...)
			}
		}
		delta = next
	}
	// A file reaches a mention when it is one or includes one that does.
	rev := map[string][]string{}
	for f, hs := range fwd {
		for _, h := range hs {
			rev[h] = append(rev[h], f)
		}
	}
	reach := map[string]bool{}
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
			return slices.Clone(cands), len(set) - start, nil // every unit reads it
		}
	}
	for _, c := range cands {
		if reach[c] {
			kept = append(kept, c)
		}
	}
	return kept, len(set) - start, nil
}

// nameList shows names in a log line: the first few, then how many more.
func nameList(names []string) string {
	const show = 6
	if len(names) <= show {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:show], ", "), len(names)-show)
}
