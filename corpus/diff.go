package corpus

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// FileDiff is the change to one file between two trees.
type FileDiff struct {
	// Path is the file's path from the top of the tree, e.g. "lib/ucs2_string.c".
	Path string
	// New and Deleted say the file exists on one side only.
	New, Deleted bool
	// Binary says diff found the file binary; it has no hunks.
	Binary bool
	Hunks  []Hunk
}

// Hunk is one hunk of a unified diff.
type Hunk struct {
	// OldStart, OldLines, NewStart and NewLines are the header's ranges.
	OldStart, OldLines, NewStart, NewLines int
	// Context is the text diff -p prints after the ranges: the nearest
	// line above that starts a C definition, e.g. "static int foo(void)".
	Context string
	// Func is the function Context names ("foo"), or "".
	Func string
	// Lines are the hunk's lines with their ' ', '-' or '+' marks.
	Lines []string

	// pieceOf is 1 + the index, in its file, of the hunk this one copies
	// definitions out of (see pieces.go); 0 for a hunk of the diff.
	pieceOf int
}

// ErrDiff is returned for diff output that cannot be read.
var ErrDiff = errors.New("tree diff")

var (
	hunkHeader = regexp.MustCompile(`^@@ -([0-9]+)(?:,([0-9]+))? \+([0-9]+)(?:,([0-9]+))? @@ ?(.*)$`)
	funcName   = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*\(`)
	// A timestamp of 1970-01-01 is how diff -N marks the absent side.
	epoch = regexp.MustCompile(`\t1970-01-01 00:00:00(\.0+)? [+-]0000$`)
)

// ParseTreeDiff reads the output of `diff -rupN a/ b/` (run with the two
// trees as a and b) into its files, in order.
func ParseTreeDiff(b []byte) ([]FileDiff, error) {
	var files []FileDiff
	var cur *FileDiff
	var h *Hunk
	var oldLeft, newLeft int
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if h != nil && (oldLeft > 0 || newLeft > 0) {
			switch {
			case strings.HasPrefix(line, `\`):
				h.Lines = append(h.Lines, line)
				continue
			case line == "" || line[0] == ' ':
				oldLeft--
				newLeft--
			case line[0] == '-':
				oldLeft--
			case line[0] == '+':
				newLeft--
			default:
				return nil, fmt.Errorf("%w: line %d: hunk of %s ends early", ErrDiff, n, cur.Path)
			}
			if line == "" {
				line = " "
			}
			h.Lines = append(h.Lines, line)
			if oldLeft < 0 || newLeft < 0 {
				return nil, fmt.Errorf("%w: line %d: hunk of %s overruns its header", ErrDiff, n, cur.Path)
			}
			continue
		}
		if h != nil && strings.HasPrefix(line, `\`) {
			h.Lines = append(h.Lines, line)
			continue
		}
		switch {
		case strings.HasPrefix(line, "diff "):
			f := strings.Fields(line)
			p, ok := strings.CutPrefix(f[len(f)-1], "b/")
			if !ok {
				return nil, fmt.Errorf("%w: line %d: %q does not name b/PATH", ErrDiff, n, line)
			}
			files = append(files, FileDiff{Path: p})
			cur, h = &files[len(files)-1], nil
		case strings.HasPrefix(line, "Binary files ") || (strings.HasPrefix(line, "Files ") && strings.HasSuffix(line, " differ")):
			if cur == nil {
				return nil, fmt.Errorf("%w: line %d: %q outside a file", ErrDiff, n, line)
			}
			cur.Binary = true
		case strings.HasPrefix(line, "--- "):
			if cur == nil {
				return nil, fmt.Errorf("%w: line %d: file header without a diff line", ErrDiff, n)
			}
			cur.New = epoch.MatchString(line)
		case strings.HasPrefix(line, "+++ "):
			if cur == nil {
				return nil, fmt.Errorf("%w: line %d: file header without a diff line", ErrDiff, n)
			}
			cur.Deleted = epoch.MatchString(line)
		case strings.HasPrefix(line, "@@ "):
			if cur == nil {
				return nil, fmt.Errorf("%w: line %d: hunk outside a file", ErrDiff, n)
			}
			m := hunkHeader.FindStringSubmatch(line)
			if m == nil {
				return nil, fmt.Errorf("%w: line %d: bad hunk header %q", ErrDiff, n, line)
			}
			nh := Hunk{OldStart: atoi(m[1]), OldLines: count(m[2]), NewStart: atoi(m[3]), NewLines: count(m[4]), Context: m[5]}
			if fm := funcName.FindStringSubmatch(nh.Context); fm != nil {
				nh.Func = fm[1]
			}
			cur.Hunks = append(cur.Hunks, nh)
			h = &cur.Hunks[len(cur.Hunks)-1]
			oldLeft, newLeft = nh.OldLines, nh.NewLines
		case strings.HasPrefix(line, "Only in "):
			return nil, fmt.Errorf("%w: line %d: %q: run diff with -N so new and deleted files have hunks", ErrDiff, n, line)
		default:
			// diff's own remarks between files ("Common subdirectories",
			// symbolic links) carry no change to carry.
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDiff, err)
	}
	if h != nil && (oldLeft > 0 || newLeft > 0) {
		return nil, fmt.Errorf("%w: the last hunk of %s is cut short", ErrDiff, cur.Path)
	}
	return files, nil
}

func atoi(s string) int {
	v, _ := strconv.Atoi(s)
	return v
}

// count reads a hunk range's line count, which is 1 when left out.
func count(s string) int {
	if s == "" {
		return 1
	}
	return atoi(s)
}

// Changed returns the hunk's removed and added lines, without marks.
func (h *Hunk) Changed() []string {
	var out []string
	for _, l := range h.Lines {
		if l != "" && (l[0] == '-' || l[0] == '+') {
			out = append(out, l[1:])
		}
	}
	return out
}

// writePatch writes the hunks (by index, ascending) of f as a unified diff
// with a/ and b/ paths. The new side's line numbers are recomputed for
// the subset, so the patch applies to the old tree by itself. New and
// deleted files get /dev/null on their absent side.
func (f *FileDiff) writePatch(w *bytes.Buffer, idx []int) {
	oldName, newName := "a/"+f.Path, "b/"+f.Path
	if f.New {
		oldName = "/dev/null"
	}
	if f.Deleted {
		newName = "/dev/null"
	}
	fmt.Fprintf(w, "--- %s\n+++ %s\n", oldName, newName)
	delta := 0
	for _, i := range idx {
		h := f.Hunks[i]
		start := h.OldStart + delta
		if h.NewLines == 0 {
			start-- // an empty new side names the line before it
		}
		if h.OldLines == 0 {
			start++ // likewise for an empty old side
		}
		fmt.Fprintf(w, "@@ -%d,%d +%d,%d @@", h.OldStart, h.OldLines, start, h.NewLines)
		if h.Context != "" {
			fmt.Fprintf(w, " %s", h.Context)
		}
		w.WriteByte('\n')
		for _, l := range h.Lines {
			w.WriteString(l)
			w.WriteByte('\n')
		}
		delta += h.NewLines - h.OldLines
	}
}
