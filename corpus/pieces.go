package corpus

import (
	"slices"
	"strings"
)

// A definition piece is a copy of new definitions out of a hunk that
// cannot be taken along whole. A stable fix often calls a helper that
// another change of the update adds in a hunk that also changes what is
// there (ipv4's icmp fix calls dst_dev, which the update adds to
// include/net/dst.h in the hunk that also rewrites dst_dev_rcu and
// struct dst_entry). Taking that hunk would change a definition the
// whole kernel reads; the fix needs only the new helper. A piece is the
// helper's definition (a function, or a macro), copied from the hunk's
// new side, as an insertion after the hunk's old lines, where the older
// file is at top level: everything the definition names that the hunk
// does not add precedes it there as it does in the newer file, and what
// the hunk adds that it names comes as a piece too (needed follows it).

// newSide is a hunk's new side: its context and added lines, unmarked.
func newSide(h *Hunk) []string {
	var out []string
	for _, raw := range h.Lines {
		switch {
		case raw == "":
			out = append(out, "")
		case raw[0] == '-' || raw[0] == '\\':
		default:
			out = append(out, raw[1:])
		}
	}
	return out
}

// definitionAt returns the first and last index, in the new side of h,
// of the top-level definition of name: a function (with a body) or a
// #define, wholly inside the hunk. old is the older file, whose state at
// the hunk's first line starts the reading.
func definitionAt(h *Hunk, old, name string) (first, last int, ok bool) {
	lines := newSide(h)
	s := &scanner{}
	s.scanOld(old, h.OldStart)
	type state struct {
		depth          int
		comment, macro bool
	}
	before := make([]state, len(lines)+1)
	for i, l := range lines {
		before[i] = state{s.depth, s.comment, s.macro}
		s.line(l, false)
	}
	before[len(lines)] = state{s.depth, s.comment, s.macro}
	top := func(i int) bool { return before[i] == state{} }
	for i, l := range lines {
		if !top(i) {
			continue
		}
		t := strings.TrimLeft(l, " \t")
		if m := defineRe.FindStringSubmatch(t); m != nil {
			if m[1] != name {
				continue
			}
			end := i
			for end < len(lines) && strings.HasSuffix(lines[end], `\`) {
				end++
			}
			if end == len(lines) {
				return 0, 0, false
			}
			return i, end, true
		}
		if strings.HasPrefix(t, "#") || !containsIdent([]string{l}, name) {
			continue
		}
		// The statement may start on an earlier line ("static int\nfoo(").
		start := i
		for start > 0 && top(start-1) {
			p := strings.TrimSpace(lines[start-1])
			if p == "" || strings.HasPrefix(p, "#") || strings.HasSuffix(p, ";") || strings.HasSuffix(p, "}") || strings.HasSuffix(p, "*/") {
				break
			}
			start--
		}
		head := strings.Join(lines[start:i+1], " ")
		if declaredName(head) != name {
			continue
		}
		opened := false
		for end := i; end < len(lines); end++ {
			if before[end+1].depth > 0 {
				opened = true
			}
			if opened && top(end+1) {
				return start, end, true
			}
			if !opened && strings.HasSuffix(strings.TrimSpace(lines[end]), ";") {
				return 0, 0, false // a prototype: not a definition
			}
		}
		return 0, 0, false
	}
	return 0, 0, false
}

// maxPieceWalk bounds how far past a hunk a piece's place is looked for.
const maxPieceWalk = 400

// insertionLine is the old line a piece of h goes after: the first place,
// from the end of h's old lines on, where the older file is at top level
// between two statements (h's trailing context may open the next
// function); ok is false when there is none within maxPieceWalk lines or
// before next, the old line the file's next hunk starts at (0: none).
func insertionLine(h *Hunk, old string, next int) (int, bool) {
	if h.OldLines == 0 {
		return 0, false
	}
	after := h.OldStart + h.OldLines - 1 // the hunk's last old line
	s := &scanner{}
	s.scanOld(old, after+1)
	lines := strings.Split(old, "\n")
	for n := after; n < len(lines) && n <= after+maxPieceWalk; n++ {
		if next > 0 && n >= next {
			return 0, false
		}
		if s.depth == 0 && !s.comment && !s.macro && strings.TrimSpace(s.stmt) == "" {
			return n, true
		}
		s.line(lines[n], false) // old line n+1
	}
	return 0, false
}

// piece is the hunk that inserts the definitions of names, in the order
// h's new side has them, at the first top-level place after h's old
// lines (insertionLine). ok is false when one of them is not a whole
// definition in h, or there is no such place.
func piece(h *Hunk, old string, next int, names []string) (Hunk, bool) {
	if old == "" {
		return Hunk{}, false
	}
	at, ok := insertionLine(h, old, next)
	if !ok {
		return Hunk{}, false
	}
	lines := newSide(h)
	type span struct{ first, last int }
	var spans []span
	for _, n := range names {
		f, l, ok := definitionAt(h, old, n)
		if !ok {
			return Hunk{}, false
		}
		if !slices.Contains(spans, span{f, l}) {
			spans = append(spans, span{f, l})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return a.first - b.first })
	p := Hunk{OldStart: at, NewStart: at + 1}
	for _, sp := range spans {
		p.Lines = append(p.Lines, "+")
		for _, l := range lines[sp.first : sp.last+1] {
			p.Lines = append(p.Lines, "+"+l)
		}
	}
	p.NewLines = len(p.Lines)
	return p, true
}

// pieceUses are the identifiers of name's definition in h.
func pieceUses(h *Hunk, old, name string) ([]string, bool) {
	f, l, ok := definitionAt(h, old, name)
	if !ok {
		return nil, false
	}
	lines := newSide(h)[f : l+1]
	marked := make([]string, len(lines))
	for i, x := range lines {
		marked[i] = "+" + x
	}
	return usedIdents(&Hunk{Lines: marked}), true
}
