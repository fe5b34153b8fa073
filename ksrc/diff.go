package ksrc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/splicefleet/splicefleet/internal/bounded"
)

// Deriving a patch from changed files (create --diffext, Ksplice's mode):
// the tree holds each changed file beside its original as FILE.EXT, and
// the patch is the unified diff of every pair, as `diff -u` writes it,
// with a/ and b/ paths from the tree's top, so that ParsePatch and Apply
// take it like any other patch.

// ErrNoChangedFiles: the tree holds no FILE.EXT beside a FILE.
var ErrNoChangedFiles = errors.New("no changed files")

// diffContext is how many unchanged lines a hunk shows around a change,
// as diff -u does.
const diffContext = 3

// DiffExt walks the tree at root for files named FILE+ext beside a FILE
// and returns the unified diff that turns each FILE into FILE+ext, and the
// FILE paths it covers, relative to root and sorted. ext is the suffix
// with or without its leading dot ("new" and ".new" are one). It refuses
// a FILE+ext without its FILE, a binary file, and ext that is empty or
// holds a slash. Files under .git and symbolic links are passed over.
func DiffExt(root, ext string) ([]byte, []string, error) {
	ext = strings.TrimPrefix(ext, ".")
	if ext == "" || strings.ContainsAny(ext, `/\`) || ext == "." {
		return nil, nil, fmt.Errorf("--diffext %q: want a file name suffix such as \"new\" (FILE.new beside FILE)", ext)
	}
	suffix := "." + ext
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" && p != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(d.Name(), suffix) || d.Name() == suffix {
			return nil
		}
		rel, err := filepath.Rel(root, strings.TrimSuffix(p, suffix))
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("--diffext: %w", err)
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("%w: %s holds no FILE%s beside its FILE", ErrNoChangedFiles, root, suffix)
	}
	slices.Sort(files)
	var out bytes.Buffer
	var changed []string
	for _, f := range files {
		orig := filepath.Join(root, filepath.FromSlash(f))
		fi, err := os.Lstat(orig)
		if err != nil || !fi.Mode().IsRegular() {
			return nil, nil, fmt.Errorf("--diffext: %s%s has no original %s beside it (a new file cannot be patched into a running kernel)", f, suffix, f)
		}
		old, err := bounded.ReadFile(orig, MaxSourceSize)
		if err != nil {
			return nil, nil, err
		}
		changedText, err := bounded.ReadFile(orig+suffix, MaxSourceSize)
		if err != nil {
			return nil, nil, err
		}
		if bytes.IndexByte(old, 0) >= 0 || bytes.IndexByte(changedText, 0) >= 0 {
			return nil, nil, fmt.Errorf("--diffext: %s is a binary file", f)
		}
		d := UnifiedDiff(f, old, changedText)
		if len(d) == 0 {
			continue // FILE.EXT is FILE
		}
		out.Write(d)
		changed = append(changed, f)
	}
	if len(changed) == 0 {
		return nil, nil, fmt.Errorf("%w: every FILE%s under %s is the same as its FILE", ErrNoChangedFiles, suffix, root)
	}
	return out.Bytes(), changed, nil
}

// UnifiedDiff returns the unified diff (3 lines of context) that turns
// old into new, naming the file a/path and b/path, or nothing when they
// are the same. A last line without a newline is marked as diff marks it.
func UnifiedDiff(path string, old, new []byte) []byte {
	a, b := splitLines(old), splitLines(new)
	ops := diffLines(a, b)
	var out bytes.Buffer
	header := false
	for _, h := range hunks(ops) {
		if !header {
			fmt.Fprintf(&out, "--- a/%s\n+++ b/%s\n", path, path)
			header = true
		}
		oldStart, newStart := h.oldStart+1, h.newStart+1
		if h.oldLines == 0 {
			oldStart--
		}
		if h.newLines == 0 {
			newStart--
		}
		fmt.Fprintf(&out, "@@ -%s +%s @@\n", hunkRange(oldStart, h.oldLines), hunkRange(newStart, h.newLines))
		for _, o := range h.ops {
			var text string
			switch o.op {
			case ' ', '-':
				text = a[o.i]
			case '+':
				text = b[o.j]
			}
			out.WriteByte(o.op)
			out.WriteString(text)
			if !strings.HasSuffix(text, "\n") {
				out.WriteString("\n\\ No newline at end of file\n")
			}
		}
	}
	return out.Bytes()
}

func hunkRange(start, n int) string {
	if n == 1 {
		return fmt.Sprint(start)
	}
	return fmt.Sprintf("%d,%d", start, n)
}

// edit is one line of a diff: ' ' keeps a[i] (= b[j]), '-' drops a[i],
// '+' adds b[j].
type edit struct {
	op   byte
	i, j int
}

// diffLines is Myers' O(ND) shortest edit script from a to b.
func diffLines(a, b []string) []edit {
	n, m := len(a), len(b)
	max := n + m
	offset := max + 1
	v := make([]int, 2*max+3)
	var trace [][]int
	found := false
	for d := 0; d <= max && !found; d++ {
		trace = append(trace, slices.Clone(v))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[offset+k-1] < v[offset+k+1]) {
				x = v[offset+k+1] // down: an insertion
			} else {
				x = v[offset+k-1] + 1 // right: a deletion
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[offset+k] = x
			if x >= n && y >= m {
				found = true
				break
			}
		}
	}
	// Walk back from (n, m) through the saved frontiers.
	var rev []edit
	x, y := n, m
	for d := len(trace) - 1; d >= 0; d-- {
		vd := trace[d]
		k := x - y
		var prevK int
		if d == 0 {
			for x > 0 && y > 0 {
				x, y = x-1, y-1
				rev = append(rev, edit{op: ' ', i: x, j: y})
			}
			break
		}
		if k == -d || (k != d && vd[offset+k-1] < vd[offset+k+1]) {
			prevK = k + 1
		} else {
			prevK = k - 1
		}
		prevX := vd[offset+prevK]
		prevY := prevX - prevK
		for x > prevX && y > prevY {
			x, y = x-1, y-1
			rev = append(rev, edit{op: ' ', i: x, j: y})
		}
		if x == prevX {
			rev = append(rev, edit{op: '+', i: x, j: prevY})
		} else {
			rev = append(rev, edit{op: '-', i: prevX, j: y})
		}
		x, y = prevX, prevY
	}
	slices.Reverse(rev)
	// Within a run of changes, diff -u lists the removals first.
	out := make([]edit, 0, len(rev))
	for i := 0; i < len(rev); {
		if rev[i].op == ' ' {
			out = append(out, rev[i])
			i++
			continue
		}
		j := i
		for j < len(rev) && rev[j].op != ' ' {
			j++
		}
		for _, e := range rev[i:j] {
			if e.op == '-' {
				out = append(out, e)
			}
		}
		for _, e := range rev[i:j] {
			if e.op == '+' {
				out = append(out, e)
			}
		}
		i = j
	}
	return out
}

// diffHunk is a run of edits with its context.
type diffHunk struct {
	ops                []edit
	oldStart, oldLines int // 0-based
	newStart, newLines int
}

// hunks groups edits into hunks with diffContext lines of context,
// joining changes that fewer than 2*diffContext unchanged lines part.
func hunks(ops []edit) []diffHunk {
	var out []diffHunk
	for i := 0; i < len(ops); {
		if ops[i].op == ' ' {
			i++
			continue
		}
		start := max(0, i-diffContext)
		end := i
		for end < len(ops) {
			if ops[end].op != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].op == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*diffContext {
				end = min(len(ops), end+diffContext)
				break
			}
			end = run
		}
		h := diffHunk{ops: ops[start:end]}
		first := ops[start]
		h.oldStart, h.newStart = first.i, first.j
		for _, e := range h.ops {
			switch e.op {
			case ' ':
				h.oldLines++
				h.newLines++
			case '-':
				h.oldLines++
			case '+':
				h.newLines++
			}
		}
		out = append(out, h)
		i = end
	}
	return out
}
