// Package roff writes manual pages in the man(7) macro language, the one
// every man(1) reads.
//
// A page is built from plain text as the commands' help and the
// configuration's doc comments write it: paragraphs separated by blank
// lines, and blocks indented by spaces kept as they are (examples, lists
// of exit codes). Text is escaped so that nothing in it is read as a
// request or an escape sequence: a line starting with a dot or an
// apostrophe, a backslash, and hyphens (written \- so that options copy
// as the ASCII character they are). Other characters than ASCII are
// written as groff's \[uXXXX] so that a page renders the same whatever
// the input encoding man assumes. The writer adds no date: pages are
// reproducible.
package roff

import (
	"fmt"
	"strings"
)

// Page is a manual page being written.
type Page struct {
	b strings.Builder
}

// NewPage starts a page with its title line: name (upper-cased, as is
// the custom), section, the source (e.g. "splicefleet 1.2.0") and the
// manual's name.
func NewPage(name, section, source, manual string) *Page {
	p := &Page{}
	fmt.Fprintf(&p.b, ".TH %s %s \"\" %s %s\n", arg(strings.ToUpper(name)), arg(section), arg(source), arg(manual))
	return p
}

// Section starts a section (.SH), its title upper-cased.
func (p *Page) Section(title string) {
	fmt.Fprintf(&p.b, ".SH %s\n", arg(strings.ToUpper(title)))
}

// Raw adds lines of roff as they are; the caller escaped them.
func (p *Page) Raw(roff string) {
	p.b.WriteString(strings.TrimSuffix(roff, "\n"))
	p.b.WriteString("\n")
}

// Text adds plain text (see Format).
func (p *Page) Text(text string) {
	if r := Format(text); r != "" {
		p.b.WriteString(r)
	}
}

// Item adds a tagged paragraph (.TP): tag is roff (see Bold, Italic,
// Escape), text plain text (see Format).
func (p *Page) Item(tag, text string) {
	fmt.Fprintf(&p.b, ".TP\n%s\n", tag)
	body := format(text, ".IP\n", ".IP\n.nf\n", ".fi\n")
	// The first paragraph of an item follows its tag.
	p.b.WriteString(strings.TrimPrefix(body, ".IP\n"))
}

// Example adds lines kept as they are, indented, as a command line or a
// file's content is shown.
func (p *Page) Example(lines string) {
	p.b.WriteString(".PP\n.RS 4\n.nf\n")
	for _, l := range strings.Split(strings.Trim(dedent(lines), "\n"), "\n") {
		p.b.WriteString(Escape(l))
		p.b.WriteString("\n")
	}
	p.b.WriteString(".fi\n.RE\n")
}

// Bytes returns the page.
func (p *Page) Bytes() []byte { return []byte(p.b.String()) }

// Format turns plain text into roff: a block of lines that all start
// with a space (or a tab) is kept as it is, without its common
// indentation; other blocks are paragraphs that man fills. Words in
// backquotes (`key`) are set in bold.
func Format(text string) string {
	return format(text, ".PP\n", ".PP\n.RS 4\n.nf\n", ".fi\n.RE\n")
}

// format is Format with the requests that start a paragraph, and start
// and end a block kept as it is: in an item (.TP), they keep to the
// item's indentation.
func format(text, para, pre, endPre string) string {
	var b strings.Builder
	for _, block := range blocks(text) {
		if indented(block) {
			b.WriteString(pre)
			for _, l := range strings.Split(dedent(strings.Join(block, "\n")), "\n") {
				b.WriteString(Escape(l))
				b.WriteString("\n")
			}
			b.WriteString(endPre)
			continue
		}
		b.WriteString(para)
		for _, l := range block {
			b.WriteString(inline(strings.TrimSpace(l)))
			b.WriteString("\n")
		}
	}
	return b.String()
}

// blocks splits text at blank lines, and where lines indented by spaces
// start or end.
func blocks(text string) [][]string {
	var out [][]string
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
		}
		cur = nil
	}
	for _, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if strings.TrimSpace(l) == "" {
			flush()
			continue
		}
		l = strings.TrimRight(l, " \t")
		if len(cur) > 0 && indented(cur) != indented([]string{l}) {
			flush()
		}
		cur = append(cur, l)
	}
	flush()
	return out
}

func indented(block []string) bool {
	for _, l := range block {
		if !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") {
			return false
		}
	}
	return true
}

// dedent removes the indentation every non-blank line of s shares.
func dedent(s string) string {
	lines := strings.Split(strings.ReplaceAll(s, "\t", "    "), "\n")
	common := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " "))
		if common < 0 || n < common {
			common = n
		}
	}
	for i, l := range lines {
		if len(l) >= common && common > 0 {
			lines[i] = l[common:]
		}
	}
	return strings.Join(lines, "\n")
}

// inline escapes one line of a filled paragraph, setting `words` bold.
func inline(line string) string {
	parts := strings.Split(line, "`")
	if len(parts)%2 == 0 {
		// An odd number of backquotes: no markup.
		return Escape(line)
	}
	var b strings.Builder
	for i, part := range parts {
		if i%2 == 1 {
			b.WriteString(Bold(part))
		} else {
			b.WriteString(escapeChars(part))
		}
	}
	return guardLine(b.String())
}

// Bold is text set in bold.
func Bold(text string) string { return `\fB` + escapeChars(text) + `\fR` }

// Italic is text set in italics (underlined on a terminal): what the
// reader replaces.
func Italic(text string) string { return `\fI` + escapeChars(text) + `\fR` }

// Escape makes one line of text safe to write as a text line.
func Escape(line string) string { return guardLine(escapeChars(line)) }

// guardLine keeps a line that starts with a dot or an apostrophe from
// being read as a request.
func guardLine(l string) string {
	if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
		return `\&` + l
	}
	return l
}

func escapeChars(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\e`)
		case r == '-':
			b.WriteString(`\-`)
		case r == '\n' || r == '\t':
			b.WriteRune(' ')
		case r < ' ' || r == 0x7f:
			// Control characters have no place in a page.
			fmt.Fprintf(&b, `\[u%04X]`, 0xFFFD)
		case r > 0x7e:
			fmt.Fprintf(&b, `\[u%04X]`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// arg quotes a macro argument.
func arg(s string) string {
	return `"` + strings.ReplaceAll(escapeChars(s), `"`, `\(dq`) + `"`
}
