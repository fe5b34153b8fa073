package ksrc

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// A small C scanner, enough to say which top-level definitions of a
// header a patch changes (changedDefs) and whether a file mentions a
// name (mentions). It is not a parser: it splits the text into tokens
// (comments dropped, backslash-newlines joined, preprocessor lines
// bracketed) and the tokens into top-level items, each a #define, a
// declaration or definition ended by ";" at brace depth 0, or a function
// with its body. Where it cannot tell what an item defines, it says so
// and the caller does not narrow.

// cTokKind is the kind of a C token.
type cTokKind int

const (
	tIdent cTokKind = iota
	tNum
	tStr   // a string or character literal
	tPunct // one character, or "##"
	tHash  // the # that starts a preprocessor line
	tEOD   // the end of a preprocessor line
)

type cTok struct {
	kind        cTokKind
	text        string
	first, last int // lines, from 1
}

var errCScan = errors.New("c scanner")

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentByte(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// lexC splits C text into tokens. Comments are dropped; a
// backslash-newline joins lines; a preprocessor line is a tHash, its
// tokens, then a tEOD. An unterminated comment or literal is an error,
// except a quote on a preprocessor line (#error don't), taken as a
// punctuator.
func lexC(src []byte) ([]cTok, error) {
	var toks []cTok
	line := 1
	bol := true // only blanks and comments so far on this line
	directive := false
	endDirective := func() {
		if directive {
			toks = append(toks, cTok{kind: tEOD, first: line, last: line})
			directive = false
		}
	}
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\\' && i+1 < len(src) && src[i+1] == '\n':
			i += 2
			line++
			continue
		case c == '\\' && i+2 < len(src) && src[i+1] == '\r' && src[i+2] == '\n':
			i += 3
			line++
			continue
		case c == '\n':
			endDirective()
			line++
			i++
			bol = true
			continue
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(string(src[i+2:]), "*/")
			if end < 0 {
				return nil, fmt.Errorf("%w: line %d: unterminated comment", errCScan, line)
			}
			line += strings.Count(string(src[i:i+2+end]), "\n")
			i += 2 + end + 2
			continue
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				if src[i] == '\\' && i+1 < len(src) && src[i+1] == '\n' {
					line++
					i++
				}
				i++
			}
			continue
		}
		start, first := i, line
		kind := tPunct
		switch {
		case c == '#' && bol && !directive:
			directive = true
			kind = tHash
			i++
		case c == '"' || c == '\'':
			j := i + 1
			closed := false
			for j < len(src) {
				if src[j] == '\\' && j+1 < len(src) {
					if src[j+1] == '\n' {
						line++
					}
					j += 2
					continue
				}
				if src[j] == '\n' {
					break
				}
				if src[j] == c {
					closed = true
					j++
					break
				}
				j++
			}
			switch {
			case closed:
				kind, i = tStr, j
			case directive:
				i++ // a stray quote in #error text
			default:
				return nil, fmt.Errorf("%w: line %d: unterminated literal", errCScan, first)
			}
		case isIdentStart(c):
			for i < len(src) && isIdentByte(src[i]) {
				i++
			}
			kind = tIdent
		case (c >= '0' && c <= '9') || (c == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9'):
			for i++; i < len(src); i++ {
				if (src[i] == '+' || src[i] == '-') && strings.IndexByte("eEpP", src[i-1]) >= 0 {
					continue
				}
				if !isIdentByte(src[i]) && src[i] != '.' {
					break
				}
			}
			kind = tNum
		case c == '#' && i+1 < len(src) && src[i+1] == '#':
			i += 2
		default:
			i++
		}
		bol = false
		toks = append(toks, cTok{kind: kind, text: string(src[start:i]), first: first, last: line})
	}
	endDirective()
	return toks, nil
}

// identRE finds the identifiers in a literal's text: a name in a string
// (an asm template) counts as a mention.
var identRE = regexp.MustCompile(`[A-Za-z_$][A-Za-z0-9_$]*`)

// tokIdents calls f for every identifier of toks, those inside literals
// included.
func tokIdents(toks []cTok, f func(string)) {
	for _, t := range toks {
		switch t.kind {
		case tIdent:
			f(t.text)
		case tStr:
			for _, m := range identRE.FindAllString(t.text, -1) {
				f(m)
			}
		}
	}
}

// cItemKind is what a top-level item of a header is.
type cItemKind int

const (
	itemDecl   cItemKind = iota // a declaration, definition or function
	itemMacro                   // #define
	itemOpaque                  // a macro invocation, or text the scanner cannot read: what it defines is unknown
)

// cItem is one top-level item of a header.
type cItem struct {
	kind  cItemKind
	names []string        // what it defines (not for itemOpaque)
	uses  map[string]bool // every identifier it mentions
	body  bool            // a function with its body, or a declaration with an initializer
	first int             // its first line
	last  int             // its last line
	text  string          // its tokens, to compare the items a patch does not touch
}

// hdrScan is a header split into top-level items.
type hdrScan struct {
	items  []cItem
	owners map[int][]int  // line -> the items with a token on it
	opaque map[int]string // line -> why a change there cannot be narrowed
	conds  map[string]int // identifier -> a conditional line (#if, #ifdef, #elif) that tests it
}

// cKeywords are C's keywords and GCC's spellings of them, never a name
// an item defines.
var cKeywords = wordSet(`auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while _Bool _Complex _Alignas _Alignof _Atomic _Noreturn _Static_assert _Thread_local __inline __inline__
__restrict __restrict__ __volatile__ __const __const__ __signed__ __extension__ __attribute__ __attribute asm __asm__
__asm typeof __typeof__ __typeof __auto_type __builtin_offsetof alignof __alignof__ static_assert bool`)

// cBuiltinTypes name a type on their own: a declaration that has one
// declares every plain identifier after it.
var cBuiltinTypes = wordSet(`char double float int long short signed unsigned void _Bool _Complex bool __signed__
struct union enum typeof __typeof__ __typeof __auto_type`)

// cAttributes are the kernel's attribute and annotation macros
// (compiler_attributes.h, compiler_types.h, init.h, cache.h, ...),
// which stand in a declaration but never are what it declares.
var cAttributes = wordSet(`__always_inline noinline __noinline __init __exit __cold __hot __pure __must_check
__maybe_unused __always_unused __used __weak __visible asmlinkage notrace noinstr __noreturn __printf __scanf
__malloc __attribute_const__ __packed __aligned __section __read_mostly __ro_after_init __user __kernel __iomem
__rcu __percpu __force __nocast __bitwise __must_hold __acquires __releases __init_or_module __ref __meminit
__initdata __initconst __refdata __exitdata __deprecated __randomize_layout __no_randomize_layout
____cacheline_aligned ____cacheline_aligned_in_smp __cacheline_aligned __cacheline_aligned_in_smp __alloc_size
__nonstring __counted_by __noclone __flatten __no_kcsan __no_sanitize_address __cpuidle __latent_entropy
__designated_init __gnu_inline __mode __copy __no_profile __nocfi __fix_address __safe __cond_lock __private
__ksym __weak __kprobes __irq_entry __softirq_entry __sched __lockfunc __naked __no_stack_protector
__cacheline_internodealigned_in_smp ____cacheline_internodealigned_in_smp __page_aligned_data __page_aligned_bss
__must_be_array __user_ptr __ro_after_init_scoped __lsm_ro_after_init __bpf_kfunc __diag_push __diag_pop`)

func wordSet(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}

// macroCase is an all-capitals name, by kernel convention a macro: a
// declaration that invokes one may define names the scanner cannot see.
var macroCase = regexp.MustCompile(`^_*[A-Z][A-Z0-9_]*$`)

// scanHeader splits a header into its top-level items.
func scanHeader(src []byte) (*hdrScan, error) {
	toks, err := lexC(src)
	if err != nil {
		return nil, err
	}
	s := &hdrScan{owners: map[int][]int{}, opaque: map[int]string{}, conds: map[string]int{}}
	own := func(first, last, item int) {
		for l := first; l <= last; l++ {
			if !slices.Contains(s.owners[l], item) {
				s.owners[l] = append(s.owners[l], item)
			}
		}
	}
	cur := -1 // the open item, reserved when its first token comes
	var curToks []cTok
	depth, paren := 0, 0
	bodyOpen := false
	// Conditional lines inside an item belong to it when their #if group
	// opens and closes inside it.
	type condLine struct{ first, last, item int }
	var conds [][]condLine
	finish := func(body bool) {
		s.items[cur] = itemOf(curToks, body)
		cur, curToks, bodyOpen = -1, nil, false
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.kind == tHash {
			j := i + 1
			for j < len(toks) && toks[j].kind != tEOD {
				j++
			}
			dir := toks[i+1 : j]
			last := t.last
			if len(dir) > 0 {
				last = dir[len(dir)-1].last
			}
			i = j
			name := ""
			if len(dir) > 0 && dir[0].kind == tIdent {
				name = dir[0].text
			}
			switch name {
			case "define":
				if len(dir) < 2 || dir[1].kind != tIdent {
					return nil, fmt.Errorf("%w: line %d: #define without a name", errCScan, t.first)
				}
				it := cItem{kind: itemMacro, names: []string{dir[1].text}, uses: map[string]bool{}, first: t.first, last: last, text: joinToks(dir)}
				tokIdents(dir[2:], func(id string) { it.uses[id] = true })
				s.items = append(s.items, it)
				own(t.first, last, len(s.items)-1)
			case "if", "ifdef", "ifndef", "elif", "elifdef", "elifndef", "else", "endif":
				if name == "if" || name == "ifdef" || name == "ifndef" {
					conds = append(conds, nil)
				}
				tokIdents(dir[1:], func(id string) {
					if _, ok := s.conds[id]; !ok {
						s.conds[id] = t.first
					}
				})
				if len(conds) == 0 {
					return nil, fmt.Errorf("%w: line %d: #%s without #if", errCScan, t.first, name)
				}
				conds[len(conds)-1] = append(conds[len(conds)-1], condLine{t.first, last, cur})
				if name == "endif" {
					group := conds[len(conds)-1]
					conds = conds[:len(conds)-1]
					inside := group[0].item >= 0
					for _, c := range group {
						inside = inside && c.item == group[0].item
					}
					for _, c := range group {
						for l := c.first; l <= c.last; l++ {
							if inside {
								own(l, l, c.item)
							} else {
								s.opaque[l] = "a conditional (#if, #ifdef, #else, #endif) line"
							}
						}
					}
				}
			case "pragma", "error", "warning", "line", "":
				for l := t.first; l <= last; l++ {
					if cur >= 0 {
						own(l, l, cur)
					} else {
						s.opaque[l] = "a #" + name + " line"
					}
				}
			default: // include, include_next, undef, anything else
				for l := t.first; l <= last; l++ {
					s.opaque[l] = "an #" + name + " line"
				}
			}
			continue
		}
		if cur < 0 {
			if t.kind == tPunct && t.text == ";" {
				continue // an empty declaration, or ";" after a function
			}
			s.items = append(s.items, cItem{})
			cur = len(s.items) - 1
		}
		prev := cTok{}
		if len(curToks) > 0 {
			prev = curToks[len(curToks)-1]
		}
		curToks = append(curToks, t)
		own(t.first, t.last, cur)
		if t.kind != tPunct {
			continue
		}
		switch t.text {
		case "(":
			paren++
		case ")":
			if paren--; paren < 0 {
				return nil, fmt.Errorf("%w: line %d: unbalanced )", errCScan, t.first)
			}
		case "{":
			if depth == 0 && paren == 0 {
				bodyOpen = prev.kind == tPunct && prev.text == ")"
			}
			depth++
		case "}":
			if depth--; depth < 0 {
				return nil, fmt.Errorf("%w: line %d: unbalanced }", errCScan, t.first)
			}
			if depth == 0 && paren == 0 && bodyOpen {
				finish(true)
			}
		case ";":
			if depth == 0 && paren == 0 {
				finish(false)
			}
		}
	}
	if depth != 0 || paren != 0 || len(conds) != 0 {
		return nil, fmt.Errorf("%w: unbalanced braces, parentheses or #if at the end", errCScan)
	}
	if cur >= 0 {
		last := cur
		finish(false)
		s.items[last].kind = itemOpaque // text after the last ";": a macro invocation
	}
	return s, nil
}

func joinToks(toks []cTok) string {
	var b strings.Builder
	for _, t := range toks {
		b.WriteString(t.text)
		b.WriteByte(' ')
	}
	return b.String()
}

// itemOf reads what a C item (not a directive) defines.
func itemOf(toks []cTok, body bool) cItem {
	it := cItem{kind: itemDecl, uses: map[string]bool{}, first: toks[0].first, last: toks[len(toks)-1].last, text: joinToks(toks), body: body}
	tokIdents(toks, func(id string) { it.uses[id] = true })
	names := map[string]bool{}
	// Tags a brace group defines, at any depth (a struct defined inside
	// another is of file scope), and the enumerators of every enum.
	for i, t := range toks {
		if t.kind != tIdent || (t.text != "struct" && t.text != "union" && t.text != "enum") {
			continue
		}
		j := skipAttributes(toks, i+1)
		if j+1 < len(toks) && toks[j].kind == tIdent && toks[j+1].text == "{" {
			names[toks[j].text] = true
			j++
		}
		if t.text == "enum" && j < len(toks) && toks[j].text == "{" {
			for _, e := range enumerators(toks[j:]) {
				names[e] = true
			}
		}
	}
	// The declarators at depth 0, up to the body of a function.
	end := len(toks)
	if body {
		for i, t := range toks {
			if t.text == "{" {
				end = i
				break
			}
		}
	}
	top := toks[:end]
	if static := len(top) > 0 && (top[0].text == "static_assert" || top[0].text == "_Static_assert"); static {
		it.names = nil
		return it // defines nothing
	}
	if emitted(top) {
		// Compiled into every object that reads it, used or not.
		it.kind = itemOpaque
		return it
	}
	var plain []string
	typeSeen := false
	segment := 0
	skipInit := false
	var opaque bool
	for i := 0; i < len(top); i++ {
		t := top[i]
		switch {
		case t.text == "(" || t.text == "{" || t.text == "[":
			close := matching(top, i)
			if t.text == "(" && i+1 < len(top) && (top[i+1].text == "*" || top[i+1].text == "^") && !skipInit {
				for _, u := range top[i+1 : close] {
					if u.kind == tIdent && !cKeywords[u.text] && !cAttributes[u.text] {
						names[u.text] = true // (*fp)(...)
					}
				}
			}
			i = close
		case t.text == ",":
			segment++
			skipInit = false
		case t.text == "=":
			skipInit = true
			it.body = true
		case skipInit || t.kind != tIdent:
		case cBuiltinTypes[t.text]:
			typeSeen = true
			if t.text == "struct" || t.text == "union" || t.text == "enum" {
				// the tag after it is a reference, or defined above
				i = skipAttributes(top, i+1)
				if i < len(top) && top[i].kind != tIdent {
					i--
				}
			}
		case cKeywords[t.text] || cAttributes[t.text]:
		case i+1 < len(top) && top[i+1].text == "(":
			if macroCase.MatchString(t.text) {
				opaque = true // DECLARE_PER_CPU(int, x): names made by a macro
			}
			names[t.text] = true
		default:
			if segment == 0 && !typeSeen && len(plain) == 0 {
				plain = append(plain, t.text) // the type, a typedef name
				typeSeen = true
				continue
			}
			names[t.text] = true
		}
	}
	if opaque {
		it.kind = itemOpaque
		return it
	}
	for n := range names {
		it.names = append(it.names, n)
	}
	slices.Sort(it.names)
	return it
}

// emitted reports whether a declaration is compiled into every object
// that reads it, used or not: a top-level asm statement, or a
// definition marked used or put in a section.
func emitted(top []cTok) bool {
	if len(top) > 0 && (top[0].text == "asm" || top[0].text == "__asm__" || top[0].text == "__asm") {
		return true
	}
	for i, t := range top {
		switch t.text {
		case "__used", "__section", "__attribute_used__":
			return true
		case "__attribute__", "__attribute":
			if i+1 < len(top) && top[i+1].text == "(" {
				for _, u := range top[i+1 : matching(top, i+1)] {
					if u.text == "used" || u.text == "__used__" || u.text == "section" || u.text == "__section__" {
						return true
					}
				}
			}
		}
	}
	return false
}

// skipAttributes returns the index of the first token from i that is
// not an attribute, a qualifier or an attribute's parentheses.
func skipAttributes(toks []cTok, i int) int {
	for i < len(toks) && toks[i].kind == tIdent && (cAttributes[toks[i].text] || (cKeywords[toks[i].text] && !cBuiltinTypes[toks[i].text])) {
		i++
		if i < len(toks) && toks[i].text == "(" {
			i = matching(toks, i) + 1
		}
	}
	return i
}

// matching returns the index of the bracket closing toks[i], or the last
// index when it is not closed.
func matching(toks []cTok, i int) int {
	open := toks[i].text
	close := map[string]string{"(": ")", "[": "]", "{": "}"}[open]
	d := 0
	for j := i; j < len(toks); j++ {
		switch toks[j].text {
		case open:
			d++
		case close:
			if d--; d == 0 {
				return j
			}
		}
	}
	return len(toks) - 1
}

// enumerators returns the names an enum body (from its "{") defines.
func enumerators(toks []cTok) []string {
	var out []string
	want := true
	end := matching(toks, 0)
	for i := 1; i < end; i++ {
		t := toks[i]
		switch {
		case t.text == "(" || t.text == "[" || t.text == "{":
			i = matching(toks, i)
		case t.text == ",":
			want = true
		case want && t.kind == tIdent:
			out = append(out, t.text)
			want = false
		}
	}
	return out
}
