// Package safetext makes text that came from another host or from a file
// safe to print on an operator's terminal.
//
// Node names, failure reasons, tags and rollout ids arrive over gossip,
// and manifest descriptions come in files anyone can hand an operator:
// printed raw, an ESC sequence in them could rewrite the screen, set the
// window title, write the clipboard (OSC 52) or hide the rest of a line;
// a carriage return or a bidirectional override could make a refusal
// read as a success. Everything the CLI prints from such sources goes
// through this package, which replaces every character a terminal could
// act on with a visible escape:
//
//   - C0 controls (including ESC, CR, BEL) and DEL as \u001b, \u000d, ...;
//   - C1 controls (U+0080 to U+009F, among them the 8-bit CSI and OSC);
//   - format and separator characters (bidirectional overrides and
//     isolates, zero-width characters, U+2028, U+2029), and every other
//     rune unicode.IsPrint refuses, as \uXXXX (a surrogate pair
//     beyond U+FFFF);
//   - each byte of invalid UTF-8 as \xNN.
//
// String escapes a single value, tabs and newlines included, so a name
// cannot add a row or a column to a table. Writer escapes a whole output
// stream and keeps its tabs and newlines. The \u forms are JSON escapes,
// so JSON that passes through Writer stays valid JSON and decodes to the
// same values.
package safetext

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// String returns s with every character a terminal could act on escaped,
// tabs and newlines included.
func String(s string) string {
	if clean(s, false) {
		return s
	}
	var b strings.Builder
	escape(&b, s, false)
	return b.String()
}

// Strings applies String to each of ss.
func Strings(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = String(s)
	}
	return out
}

// Writer returns a writer that escapes what String escapes except tabs
// and newlines, and writes the result to w. Each Write is escaped on its
// own: a UTF-8 sequence split across two writes shows as \x escapes.
func Writer(w io.Writer) io.Writer { return &writer{w: w} }

type writer struct{ w io.Writer }

func (sw *writer) Write(p []byte) (int, error) {
	s := string(p)
	if clean(s, true) {
		return sw.w.Write(p)
	}
	var b strings.Builder
	escape(&b, s, true)
	if _, err := io.WriteString(sw.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// safe says whether r prints as itself; layout says tabs and newlines
// may stay.
func safe(r rune, layout bool) bool {
	if r == '\t' || r == '\n' {
		return layout
	}
	return r == ' ' || unicode.IsPrint(r)
}

func clean(s string, layout bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			// Decode the rest rune by rune.
			for _, r := range s[i:] {
				if r == utf8.RuneError || !safe(r, layout) {
					return false
				}
			}
			return true
		}
		if !safe(rune(c), layout) {
			return false
		}
	}
	return true
}

func escape(b *strings.Builder, s string, layout bool) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(b, `\x%02x`, s[i])
		case safe(r, layout):
			b.WriteString(s[i : i+size])
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r) // a surrogate pair, as JSON writes it
			fmt.Fprintf(b, `\u%04x\u%04x`, r1, r2)
		default:
			fmt.Fprintf(b, `\u%04x`, r)
		}
		i += size
	}
}
