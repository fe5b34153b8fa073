package corpus

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
)

// MaxTaken bounds the hunks one unit takes along from other units.
const MaxTaken = 16

// TakenHunk is a hunk a unit took along from another unit because its own
// added lines use an identifier the hunk newly declares or defines.
type TakenHunk struct {
	// File is the hunk's file; Hunk its header's ranges ("@@ -709,6 +709,7 @@").
	File string `json:"file"`
	Hunk string `json:"hunk"`
	// From is the unit the hunk was grouped into (it keeps it).
	From string `json:"from"`
	// For are the identifiers the unit needed from it.
	For []string `json:"for"`
	// Definitions says only the definitions of For were copied out of
	// the hunk, which changes more than the unit may take (pieces.go).
	Definitions bool `json:"definitions,omitempty"`
}

// declKind is what a hunk's added line declares.
type declKind int

const (
	declGlobal declKind = iota // function, macro, type, enumerator, variable
	declStatic                 // a static function or variable, or a macro or type of a .c file: visible in its file only
	declMember                 // a struct or union member: reached through a header the unit includes
)

// hunkDecls is what one hunk's added lines declare, and whether the hunk
// may be taken along at all: it removes nothing and adds only
// declarations, preprocessor lines, comments and whole new functions.
type hunkDecls struct {
	names     map[string]declKind
	takeable  bool
	uses      []string // identifiers of its added lines
	bodyLines bool     // it adds lines to the body of a function it does not add
	// fns are the functions whose bodies its added lines change.
	fns []string
	// locals are the local variables it declares, by the function they
	// are declared in, when that is all the hunk does: it removes
	// nothing, and adds only declarations without initializers (no code
	// runs for them), blank lines and comments to existing functions.
	locals map[string]string
}

var (
	cIdent    = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)
	defineRe  = regexp.MustCompile(`^#\s*define\s+([A-Za-z_][A-Za-z0-9_]*)`)
	includeRe = regexp.MustCompile(`^#\s*include\s*([<"])([^>"]+)[>"]`)
	aggrRe    = regexp.MustCompile(`^(?:typedef\s+)?(struct|union|enum)\b\s*([A-Za-z_][A-Za-z0-9_]*)?`)
	labelRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*:\s*$`)
	stringRe  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	fnPtrRe   = regexp.MustCompile(`\(\s*\*\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*\(`)
	// localRe is a declaration of local variables without initializer:
	// "struct pcc_mbox_chan *pcc_mchan;", "int i, *p, buf[4];".
	localRe = regexp.MustCompile(`^(?:(?:const|volatile|unsigned|signed|struct|union|enum)\s+)*[A-Za-z_]\w*(?:\s+|\s*\*[\s*]*)` +
		`([A-Za-z_]\w*(?:\s*\[[^\]=]*\])?(?:\s*,\s*\**\s*[A-Za-z_]\w*(?:\s*\[[^\]=]*\])?)*)\s*;$`)
)

// notTypes are words that start a statement, not a declaration.
var notTypes = map[string]bool{"return": true, "goto": true, "break": true, "continue": true, "case": true,
	"default": true, "else": true, "do": true, "sizeof": true}

// localDecl returns the names a line declares when it is a local
// declaration without initializer.
func localDecl(l string) []string {
	t := strings.TrimSpace(l)
	m := localRe.FindStringSubmatch(t)
	if m == nil || notTypes[cIdent.FindString(t)] {
		return nil
	}
	var names []string
	for _, part := range strings.Split(m[1], ",") {
		part = strings.TrimLeft(strings.TrimSpace(part), "* ")
		if id := cIdent.FindString(part); id != "" && !cWords[id] {
			names = append(names, id)
		}
	}
	return names
}

// cWords are identifiers that name nothing a hunk could declare.
var cWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`auto break case char const continue default do double else enum extern
		float for goto if inline int long register restrict return short signed sizeof static struct switch
		typedef union unsigned void volatile while bool true false NULL __attribute__ typeof __typeof__
		asm __asm__ __always_inline noinline __init __exit __user __iomem __rcu __must_check`) {
		cWords[w] = true
	}
}

// scope is where a line of C sits, read line by line in kernel style:
// a line starting in column 0 with an identifier or '}' is at top level.
type scope int

const (
	scopeTop  scope = iota
	scopeFunc       // a function body
	scopeAggr       // a struct, union or enum body
	scopeData       // an initializer
	scopePP         // a preprocessor line or a macro's continuation
)

type scanner struct {
	depth    int
	outer    scope
	enum     bool   // the aggregate is an enum
	stmt     string // text of the top-level statement so far
	newFunc  bool   // the function body's header was an added line
	stmtNew  bool   // an added line is part of stmt
	comment  bool   // inside /* */
	macro    bool   // the last line ended in '\'
	declares map[string]declKind
	static   bool   // the file is a .c file: its names are static to it
	fn       string // the function whose body the scanner is in
}

// stripLine removes comments (tracking /* */ across lines) and literals.
func (s *scanner) stripLine(l string) string {
	var b strings.Builder
	for i := 0; i < len(l); {
		if s.comment {
			j := strings.Index(l[i:], "*/")
			if j < 0 {
				return b.String()
			}
			i += j + 2
			s.comment = false
			continue
		}
		if strings.HasPrefix(l[i:], "//") {
			break
		}
		if strings.HasPrefix(l[i:], "/*") {
			s.comment = true
			i += 2
			continue
		}
		b.WriteByte(l[i])
		i++
	}
	return stringRe.ReplaceAllString(b.String(), `""`)
}

// line reads one line of the new side; added says it is a '+' line. It
// returns the scope the line is in.
func (s *scanner) line(raw string, added bool) scope {
	if s.macro {
		s.macro = strings.HasSuffix(raw, `\`)
		return scopePP
	}
	if strings.HasPrefix(strings.TrimLeft(raw, " \t"), "#") && !s.comment {
		s.macro = strings.HasSuffix(raw, `\`)
		if m := defineRe.FindStringSubmatch(strings.TrimLeft(raw, " \t")); m != nil && added {
			s.declare(m[1], s.staticKind(declGlobal))
		}
		return scopePP
	}
	wasComment := s.comment
	l := s.stripLine(raw)
	if strings.TrimSpace(l) == "" {
		if s.depth > 0 {
			return s.outer
		}
		if wasComment || s.comment {
			return scopePP // a comment: declares nothing, changes no code
		}
		return scopeTop
	}
	if c := l[0]; (c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '}') && !labelRe.MatchString(l) {
		if c != '}' && s.depth > 0 {
			s.depth, s.stmt, s.stmtNew = 0, "", false
		}
	}
	at := scopeTop
	if s.depth > 0 {
		at = s.outer
	}
	if added && s.depth > 0 && s.outer == scopeAggr {
		s.member(l)
	}
	for i := 0; i < len(l); i++ {
		switch l[i] {
		case '{':
			if s.depth == 0 {
				s.open(s.stmt+" "+l[:i], added)
			}
			s.depth++
		case '}':
			if s.depth > 0 {
				s.depth--
			}
			if s.depth == 0 {
				// What follows the block starts a new statement, or
				// names a typedef of an aggregate.
				s.stmt, s.stmtNew = "", false
				if s.outer == scopeAggr {
					s.stmt = "}"
				}
				s.outer = scopeTop
				l = l[i+1:]
				i = -1
			}
		case ';':
			if s.depth == 0 {
				if added || s.stmtNew {
					s.topDecl(s.stmt + " " + l[:i])
				}
				s.stmt, s.stmtNew = "", false
				l = l[i+1:]
				i = -1
			}
		}
	}
	if s.depth == 0 {
		s.stmt += " " + l
		s.stmtNew = s.stmtNew || added
	}
	return at
}

func (s *scanner) staticKind(k declKind) declKind {
	if s.static {
		return declStatic
	}
	return k
}

func (s *scanner) declare(name string, k declKind) {
	if name != "" && !cWords[name] && s.declares != nil {
		s.declares[name] = k
	}
}

// open classifies the block a top-level '{' opens.
func (s *scanner) open(head string, added bool) {
	head = strings.TrimSpace(head)
	s.enum = false
	switch m := aggrRe.FindStringSubmatch(head); {
	case strings.Contains(head, "="):
		s.outer = scopeData
	case m != nil && !strings.Contains(head, "("):
		s.outer, s.enum = scopeAggr, m[1] == "enum"
		if added || s.stmtNew {
			s.declare(m[2], s.staticKind(declGlobal))
		}
	case strings.Contains(head, "("):
		s.outer = scopeFunc
		s.fn = declaredName(head)
		s.newFunc = added || s.stmtNew
		if s.newFunc {
			s.funcName(head)
		}
	default:
		s.outer = scopeData
	}
}

// declaredName is the name a function's declarator gives, "" when no
// type precedes it (EXPORT_SYMBOL(x) is not a function).
func declaredName(decl string) string {
	i := strings.Index(decl, "(")
	if i < 0 {
		return ""
	}
	ids := cIdent.FindAllString(decl[:i], -1)
	if len(ids) < 2 || ids[0] == "typedef" {
		return ""
	}
	return ids[len(ids)-1]
}

// funcName declares the function a top-level declarator names, when a
// type precedes the name (so EXPORT_SYMBOL(x) is not taken for one).
func (s *scanner) funcName(decl string) {
	i := strings.Index(decl, "(")
	if i < 0 {
		return
	}
	ids := cIdent.FindAllString(decl[:i], -1)
	if len(ids) < 2 || ids[0] == "typedef" {
		return
	}
	// A function of a .c file is global unless static; a static
	// inline of a header reaches every file including it.
	k := declGlobal
	if s.static && ids[0] == "static" {
		k = declStatic
	}
	s.declare(ids[len(ids)-1], k)
}

// topDecl reads a top-level statement ending in ';': a prototype, a
// variable, or a typedef.
func (s *scanner) topDecl(stmt string) {
	stmt = strings.TrimSpace(stmt)
	if strings.HasPrefix(stmt, "}") {
		ids := cIdent.FindAllString(stmt, -1)
		if len(ids) > 0 {
			s.declare(ids[len(ids)-1], s.staticKind(declGlobal))
		}
		return
	}
	if strings.Contains(stmt, "(") {
		if m := fnPtrRe.FindStringSubmatch(stmt); m != nil && strings.HasPrefix(stmt, "typedef") {
			s.declare(m[1], s.staticKind(declGlobal))
			return
		}
		if !strings.Contains(stmt[:strings.Index(stmt, "(")], "=") {
			s.funcName(stmt)
		}
		return
	}
	if j := strings.IndexAny(stmt, "=["); j >= 0 {
		stmt = stmt[:j]
	}
	ids := cIdent.FindAllString(stmt, -1)
	if len(ids) >= 2 {
		k := s.staticKind(declGlobal)
		if ids[0] == "static" {
			k = declStatic
		}
		s.declare(ids[len(ids)-1], k)
	}
}

// member declares what an added line of a struct, union or enum body
// names.
func (s *scanner) member(l string) {
	t := strings.TrimSpace(l)
	if s.enum {
		if ids := cIdent.FindAllString(t, 1); len(ids) == 1 && strings.HasPrefix(t, ids[0]) {
			s.declare(ids[0], s.staticKind(declGlobal))
		}
		return
	}
	if !strings.HasSuffix(t, ";") || strings.Contains(t, "{") {
		return
	}
	if m := fnPtrRe.FindStringSubmatch(t); m != nil {
		s.declare(m[1], declMember)
		return
	}
	t = strings.TrimSuffix(t, ";")
	if j := strings.IndexAny(t, "[:"); j >= 0 {
		t = t[:j]
	}
	// "} type_eth;" closes a nested struct or union and names the member
	// it is.
	if ids := cIdent.FindAllString(t, -1); len(ids) >= 2 || len(ids) == 1 && strings.HasPrefix(t, "}") {
		s.declare(ids[len(ids)-1], declMember)
	}
}

// scanOld sets the scanner to the state at the start of line n (1-based)
// of the old file.
func (s *scanner) scanOld(text string, n int) {
	saved := s.declares
	s.declares = nil
	for i, l := range strings.Split(text, "\n") {
		if i+1 >= n {
			break
		}
		s.line(l, false)
	}
	s.declares = saved
}

// stripCopy is stripLine from a given comment state, leaving the
// scanner's own state alone.
func (s *scanner) stripCopy(l string, comment bool) string {
	c := &scanner{comment: comment}
	return c.stripLine(l)
}

// analyse reads a hunk's new side. old is the old file's text ("" when
// unknown: the hunk's diff -p context then says whether it starts inside
// a function or an aggregate).
func analyse(file string, h *Hunk, old string) hunkDecls {
	s := &scanner{declares: map[string]declKind{}, static: strings.HasSuffix(file, ".c")}
	switch {
	case old != "":
		s.scanOld(old, h.OldStart)
	case h.Context != "" && aggrRe.MatchString(h.Context) && !strings.Contains(h.Context, "("):
		s.line(h.Context, false)
	case strings.Contains(h.Context, "("):
		s.depth, s.outer = 1, scopeFunc
		// diff -p's context is the function's header line (cut at 40
		// characters): its name is the last word before the "(".
		if ids := cIdent.FindAllString(h.Context[:strings.Index(h.Context, "(")], -1); len(ids) > 0 {
			s.fn = ids[len(ids)-1]
		}
	}
	d := hunkDecls{takeable: true}
	locals, onlyLocals := map[string]string{}, true
	for _, raw := range h.Lines {
		if raw == "" || raw[0] == '\\' {
			continue
		}
		mark, text := raw[0], raw[1:]
		if mark == '-' {
			if strings.TrimSpace(text) != "" {
				d.takeable, onlyLocals = false, false
			}
			continue
		}
		added := mark == '+'
		wasComment := s.comment
		stripped := s.stripCopy(text, wasComment)
		at := s.line(text, added)
		if !added {
			continue
		}
		if (at == scopeFunc || at == scopeData) && !s.newFunc {
			d.takeable = false
			if at == scopeFunc {
				d.bodyLines = true
				if s.fn != "" && !slices.Contains(d.fns, s.fn) {
					d.fns = append(d.fns, s.fn)
				}
			}
		}
		switch names := localDecl(stripped); {
		case at == scopeFunc && !s.newFunc && s.fn != "" && len(names) > 0:
			for _, n := range names {
				locals[n] = s.fn
			}
		case strings.TrimSpace(stripped) == "":
			// a comment or a blank line
		default:
			onlyLocals = false
		}
	}
	if onlyLocals && len(locals) > 0 {
		d.locals = locals
	}
	d.names = s.declares
	d.uses = usedIdents(h)
	return d
}

// usedIdents are the identifiers of a hunk's added lines, outside
// comments and literals, including preprocessor lines.
func usedIdents(h *Hunk) []string {
	s := &scanner{}
	seen := map[string]bool{}
	var out []string
	for _, raw := range h.Lines {
		if raw == "" || raw[0] != '+' {
			if raw != "" && raw[0] != '\\' {
				s.stripLine(raw[1:]) // keep the comment state
			}
			continue
		}
		l := s.stripLine(raw[1:])
		if m := includeRe.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			continue
		}
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "#") {
			// The directive's own word names nothing.
			l = strings.TrimLeft(strings.TrimSpace(t[1:]), "abcdefghijklmnopqrstuvwxyz")
		}
		for _, id := range cIdent.FindAllString(l, -1) {
			if !cWords[id] && !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	return out
}

// oldTree reads files of the older tree, remembering them.
type oldTree struct {
	fsys  fs.FS
	files map[string]string
}

func (o *oldTree) text(p string) string {
	if o.fsys == nil {
		return ""
	}
	if t, ok := o.files[p]; ok {
		return t
	}
	b, _ := fs.ReadFile(o.fsys, p)
	o.files[p] = string(b)
	return string(b)
}

// includes are the headers a .c or .h file includes directly, as tree
// paths: "x.h" beside the file, <linux/x.h> under include/ or
// arch/ARCH/include/ (any architecture).
func includes(file, text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		m := includeRe.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		if m[1] == `"` {
			out = append(out, path.Clean(path.Join(path.Dir(file), m[2])))
		} else {
			out = append(out, "include/"+m[2], "/include/"+m[2])
		}
	}
	return out
}

func included(header string, incs []string) bool {
	for _, inc := range incs {
		if header == inc || strings.HasPrefix(inc, "/") && strings.HasPrefix(header, "arch/") && strings.HasSuffix(header, inc) {
			return true
		}
	}
	return false
}

type hunkRef struct{ file, hunk int }

// takeAlong adds to each group the hunks of other groups its added lines
// need (see Group), transitively and at most MaxTaken per group, and says
// which it took. It returns what every hunk declares too.
func takeAlong(files []FileDiff, groups [][]hunkRef, ids []string, old fs.FS) ([][]TakenHunk, map[hunkRef]hunkDecls) {
	tree := &oldTree{fsys: old, files: map[string]string{}}
	owner := map[hunkRef]int{}
	for gi, g := range groups {
		for _, r := range g {
			owner[r] = gi
		}
	}
	decls, byName, partial := indexDecls(files, tree)
	taken := make([][]TakenHunk, len(groups))
	for gi := range groups {
		order, tookFor := needed(files, groups[gi], decls, byName, partial, tree)
		for _, c := range order {
			h := &files[c.file].Hunks[c.hunk]
			tk := TakenHunk{File: files[c.file].Path, For: tookFor[c]}
			if h.pieceOf > 0 {
				src := hunkRef{c.file, h.pieceOf - 1}
				tk.Hunk, tk.From, tk.Definitions = hunkHeaderOf(&files[c.file].Hunks[src.hunk]), ids[owner[src]], true
			} else {
				tk.Hunk, tk.From = hunkHeaderOf(h), ids[owner[c]]
			}
			taken[gi] = append(taken[gi], tk)
			groups[gi] = append(groups[gi], c)
		}
	}
	return taken, decls
}

// indexDecls reads what every hunk declares and uses, and lists, for
// every identifier some takeable hunk newly declares, the hunks that do,
// in diff order; and, in partial, the hunks that cannot be taken whole
// but newly declare a function or macro a piece may copy.
func indexDecls(files []FileDiff, tree *oldTree) (map[hunkRef]hunkDecls, map[string][]hunkRef, map[string][]hunkRef) {
	decls := map[hunkRef]hunkDecls{}
	byName := map[string][]hunkRef{}
	partial := map[string][]hunkRef{}
	defer func() {
		// A hunk that only declares local variables is found by name
		// too; needed takes it only for a hunk of the same function.
		for r, d := range decls {
			for name := range d.locals {
				if t := tree.text(files[r.file].Path); t == "" || !containsIdent([]string{t}, name) {
					byName[name] = append(byName[name], r)
				}
			}
		}
		for name := range byName {
			slices.SortFunc(byName[name], func(a, b hunkRef) int {
				if a.file != b.file {
					return a.file - b.file
				}
				return a.hunk - b.hunk
			})
		}
	}()
	for fi := range files {
		f := &files[fi]
		var oldText string
		if !f.New {
			oldText = tree.text(f.Path)
		}
		for hi := range f.Hunks {
			r := hunkRef{fi, hi}
			d := analyse(f.Path, &f.Hunks[hi], oldText)
			decls[r] = d
			for name, k := range d.names {
				if oldText != "" && containsIdent([]string{oldText}, name) {
					continue // the old file has it already: not new
				}
				switch {
				case d.takeable:
					byName[name] = append(byName[name], r)
				case oldText != "" && k != declMember:
					partial[name] = append(partial[name], r)
				}
			}
		}
	}
	// partial is in diff order: files and hunks are read in order.
	return decls, byName, partial
}

// needed finds, breadth first from a group's own hunks, the hunks of
// other groups that declare what they use, at most MaxTaken, and for
// each the identifiers it was taken for. A name only a hunk that cannot
// be taken whole declares comes as a piece of it (pieces.go), which is
// added to its file's hunks.
func needed(files []FileDiff, group []hunkRef, decls map[hunkRef]hunkDecls, byName, partial map[string][]hunkRef, tree *oldTree) ([]hunkRef, map[hunkRef][]string) {
	in := map[hunkRef]bool{}
	fileIn := map[int]bool{}
	for _, r := range group {
		in[r] = true
		fileIn[r.file] = true
	}
	type item struct {
		r    hunkRef
		uses []string
		fns  []string
	}
	var todo []item
	for _, r := range group {
		todo = append(todo, item{r, decls[r].uses, decls[r].fns})
	}
	tookFor := map[hunkRef][]string{}
	var order []hunkRef
	// pieces are the hunks definitions are copied out of, and for which
	// names, in the order they were first needed.
	var pieces []hunkRef
	pieceFor := map[hunkRef][]string{}
	full := func() bool { return len(order)+len(pieces) >= MaxTaken }
	for len(todo) > 0 && !full() {
		it := todo[0]
		todo = todo[1:]
		for _, name := range it.uses {
			if declaredIn(name, it.r.file, group, order, decls) || slices.ContainsFunc(pieces, func(c hunkRef) bool { return slices.Contains(pieceFor[c], name) }) ||
				mentionedOld(name, fileIn, files, tree) {
				continue
			}
			cands := byName[name]
			// A new function's prototype alone compiles, but its
			// definition is what the module links: a piece gives it
			// where no hunk that can be taken whole does.
			defined := slices.ContainsFunc(cands, func(c hunkRef) bool {
				_, _, ok := definitionAt(&files[c.file].Hunks[c.hunk], tree.text(files[c.file].Path), name)
				return ok
			})
			if !defined {
				for _, c := range partial[name] {
					if in[c] || full() || !reaches(decls[c].names[name], c, fileIn, files, tree) {
						continue
					}
					h := &files[c.file].Hunks[c.hunk]
					uses, ok := pieceUses(h, tree.text(files[c.file].Path), name)
					if !ok {
						continue
					}
					if _, ok := piece(h, tree.text(files[c.file].Path), nextHunk(&files[c.file], c.hunk), append(slices.Clone(pieceFor[c]), name)); !ok {
						continue
					}
					if pieceFor[c] == nil {
						pieces = append(pieces, c)
					}
					pieceFor[c] = append(pieceFor[c], name)
					fileIn[c.file] = true
					todo = append(todo, item{r: c, uses: uses})
					break
				}
				if len(cands) == 0 {
					continue
				}
			}
			for _, c := range cands {
				if in[c] && !slices.Contains(order, c) {
					continue
				}
				if fn, local := decls[c].locals[name]; local {
					// A local variable: only for a hunk of the same
					// function of the same file.
					if c.file != it.r.file || !slices.Contains(it.fns, fn) {
						continue
					}
				} else if !reaches(decls[c].names[name], c, fileIn, files, tree) {
					continue
				}
				if !in[c] {
					if full() {
						break
					}
					in[c] = true
					fileIn[c.file] = true
					order = append(order, c)
					todo = append(todo, item{c, decls[c].uses, decls[c].fns})
				}
				if !slices.Contains(tookFor[c], name) {
					tookFor[c] = append(tookFor[c], name)
				}
			}
		}
	}
	for _, c := range pieces {
		p, _ := piece(&files[c.file].Hunks[c.hunk], tree.text(files[c.file].Path), nextHunk(&files[c.file], c.hunk), pieceFor[c])
		p.pieceOf = c.hunk + 1
		files[c.file].Hunks = append(files[c.file].Hunks, p)
		r := hunkRef{c.file, len(files[c.file].Hunks) - 1}
		order = append(order, r)
		tookFor[r] = pieceFor[c]
	}
	return order, tookFor
}

func hunkHeaderOf(h *Hunk) string {
	return fmt.Sprintf("@@ -%d,%d +%d,%d @@", h.OldStart, h.OldLines, h.NewStart, h.NewLines)
}

// declaredIn says a hunk of the group, its own or taken along, declares
// name in the file that uses it: a definition in the file itself is all
// the file needs (a declaration elsewhere is not, a definition elsewhere
// may need its prototype too).
func declaredIn(name string, file int, own, took []hunkRef, decls map[hunkRef]hunkDecls) bool {
	for _, r := range slices.Concat(own, took) {
		if _, ok := decls[r].names[name]; ok && r.file == file {
			return true
		}
	}
	return false
}

// mentionedOld says the old version of a file the group touches names
// the identifier already, so the group does not need it from the update.
func mentionedOld(name string, fileIn map[int]bool, files []FileDiff, tree *oldTree) bool {
	for fi := range fileIn {
		if t := tree.text(files[fi].Path); t != "" && containsIdent([]string{t}, name) {
			return true
		}
	}
	return false
}

// reaches says a declaration of kind k in hunk c is visible to the files
// of the group: a global name from anywhere, a static name from one of
// the group's files, a member from one of them or a header one of them
// includes directly.
func reaches(k declKind, c hunkRef, fileIn map[int]bool, files []FileDiff, tree *oldTree) bool {
	if k == declGlobal || fileIn[c.file] {
		return true
	}
	if k == declStatic {
		return false
	}
	header := files[c.file].Path
	for fi := range fileIn {
		f := &files[fi]
		var text strings.Builder
		text.WriteString(tree.text(f.Path))
		for _, h := range f.Hunks {
			for _, l := range h.Lines {
				if strings.HasPrefix(l, "+") {
					text.WriteString("\n" + l[1:])
				}
			}
		}
		if included(header, includes(f.Path, text.String())) {
			return true
		}
	}
	return false
}

// nextHunk is the old line the hunk of f after hunk i starts at, or 0.
func nextHunk(f *FileDiff, i int) int {
	next := 0
	for _, h := range f.Hunks {
		if h.pieceOf == 0 && h.OldStart > f.Hunks[i].OldStart && (next == 0 || h.OldStart < next) {
			next = h.OldStart
		}
	}
	return next
}
