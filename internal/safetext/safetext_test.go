package safetext

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// hostile holds what a terminal acts on: an OSC 52 clipboard write, a
// colour change, a CSI in its 8-bit C1 form, a carriage return that
// would overwrite the line, a right-to-left override, DEL, a zero-width
// joiner's cousin (U+2060), a line separator, a tag character beyond
// U+FFFF and invalid UTF-8.
const hostile = "web-1\x1b]52;c;ZXZpbA==\x07\x1b[31mred\u009b2J\rOK\u202egnp.exe\x7f\u2060\u2028\U000E0041\xff\xc3"

// terminalSafe reports the first byte or rune of s a terminal could act
// on, allowing tabs and newlines when layout is set.
func terminalSafe(t *testing.T, s string, layout bool) {
	t.Helper()
	for i, r := range s {
		// U+FFFD itself is printable text; only a byte that does not
		// decode is invalid UTF-8.
		if _, size := utf8.DecodeRuneInString(s[i:]); r == utf8.RuneError && size == 1 {
			t.Errorf("invalid UTF-8 at %d in %q", i, s)
		}
		if (r == '\n' || r == '\t') && layout {
			continue
		}
		if r != ' ' && !unicode.IsPrint(r) {
			t.Errorf("%U at %d in %q", r, i, s)
		}
	}
}

func TestStringEscapesWhatTerminalsActOn(t *testing.T) {
	got := String(hostile + "\ttab\nnewline")
	terminalSafe(t, got, false)
	want := `web-1\u001b]52;c;ZXZpbA==\u0007\u001b[31mred\u009b2J\u000dOK\u202egnp.exe\u007f\u2060\u2028\udb40\udc41\xff\xc3\u0009tab\u000anewline`
	if got != want {
		t.Errorf("String:\n got %s\nwant %s", got, want)
	}
}

func TestStringKeepsPrintableText(t *testing.T) {
	for _, s := range []string{"", "web-0007", "cve-2026-0001 fixes a use-after-free", "Grüße, 東京 ✓ \uFFFD", `C:\path`} {
		if got := String(s); got != s {
			t.Errorf("String(%q) = %q", s, got)
		}
	}
}

// TestWriterKeepsLayoutAndJSON: a stream keeps its tabs and newlines, and
// JSON written through it decodes to the same values, with nothing a
// terminal acts on left in the bytes.
func TestWriterKeepsLayoutAndJSON(t *testing.T) {
	var out bytes.Buffer
	w := Writer(&out)
	if _, err := w.Write([]byte("NAME\tREASON\n" + hostile + "\n")); err != nil {
		t.Fatal(err)
	}
	terminalSafe(t, out.String(), true)
	if !strings.HasPrefix(out.String(), "NAME\tREASON\nweb-1\\u001b]52") || strings.Count(out.String(), "\n") != 2 {
		t.Errorf("layout lost: %q", out.String())
	}

	out.Reset()
	in := map[string]string{"name": strings.ToValidUTF8(hostile, "?")}
	if err := json.NewEncoder(w).Encode(in); err != nil {
		t.Fatal(err)
	}
	terminalSafe(t, out.String(), true)
	var back map[string]string
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatalf("JSON through the writer: %v: %s", err, out.String())
	}
	if back["name"] != in["name"] {
		t.Errorf("JSON through the writer decodes to %q, want %q", back["name"], in["name"])
	}
}

func FuzzString(f *testing.F) {
	f.Add(hostile)
	f.Fuzz(func(t *testing.T, s string) {
		terminalSafe(t, String(s), false)
		var out bytes.Buffer
		_, _ = Writer(&out).Write([]byte(s))
		terminalSafe(t, out.String(), true)
	})
}
