package roff

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// render formats page with groff as man shows it, as plain text, and
// fails on any warning.
func render(t *testing.T, page []byte) string {
	t.Helper()
	var out, errs bytes.Buffer
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-rLL=200n", "-P-cbou")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(page), &out, &errs
	if err := cmd.Run(); err != nil || errs.Len() > 0 {
		t.Fatalf("groff: %v\n%s\n%s", err, errs.String(), page)
	}
	return out.String()
}

// TestTextComesOutAsWritten: what would be a request or an escape
// sequence in roff (a leading dot or apostrophe, a backslash, \fB) comes
// out as written, in paragraphs, items and examples, and so does text
// beyond ASCII.
func TestTextComesOutAsWritten(t *testing.T) {
	tricky := []string{
		`.SH NOT A SECTION`,
		`'br not a request`,
		`C:\fBnot bold\fR and \\ two backslashes`,
		`--flag -v a-b "quoted" 100% $HOME`,
		`ellipsis … and café`,
	}
	p := NewPage("tool-sub", "1", "tool 1.0", "tool manual")
	p.Section("description")
	p.Text(strings.Join(tricky, "\n\n"))
	p.Section("options")
	p.Item(Bold("--x")+" "+Italic("n"), strings.Join(tricky, "\n\n"))
	p.Section("examples")
	p.Example("  " + strings.Join(tricky, "\n  "))
	text := render(t, p.Bytes())
	if !strings.HasPrefix(text, "TOOL-SUB(1)") {
		t.Errorf("header: %q", strings.SplitN(text, "\n", 2)[0])
	}
	for _, s := range tricky {
		if n := strings.Count(text, s); n != 3 {
			t.Errorf("%q comes out %d times, want 3:\n%s", s, n, text)
		}
	}
	if strings.Contains(text, "NOT A SECTION\n") && !strings.Contains(text, ".SH NOT A SECTION") {
		t.Error("a line of text became a section")
	}
}

// TestFormat: blank lines separate paragraphs, indented lines are kept
// as they are, and `words` are bold.
func TestFormat(t *testing.T) {
	got := Format("A paragraph\nfilled by man.\nExit status:\n  0  done\n  1  refused\n\nUse `key` here.")
	want := ".PP\nA paragraph\nfilled by man.\nExit status:\n.PP\n.RS 4\n.nf\n0  done\n1  refused\n.fi\n.RE\n.PP\nUse \\fBkey\\fR here.\n"
	if got != want {
		t.Errorf("Format:\n%s\nwant:\n%s", got, want)
	}
	text := render(t, append(NewPage("t", "5", "", "").Bytes(), Format("one\ntwo\n\n  0  done\n     more")...))
	if !strings.Contains(text, "one two") || !strings.Contains(text, "0  done\n") || !strings.Contains(text, "   more") {
		t.Errorf("rendered:\n%s", text)
	}
}
