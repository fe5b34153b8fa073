package ksrc

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Bounds on what ParsePatch and Apply accept. A livepatch fixes a few
// functions; anything near these sizes is a mistake or an attack.
const (
	// MaxPatchSize is the largest patch ParsePatch reads, in bytes.
	MaxPatchSize = 4 << 20
	// MaxPatchFiles is the most files one patch may change.
	MaxPatchFiles = 64
	// MaxSourceSize is the largest file Apply patches, in bytes.
	MaxSourceSize = 16 << 20
	// MaxOffset is how many lines away from where a hunk says it belongs
	// Apply looks for its context, like patch(1)'s offset search.
	MaxOffset = 1000
)

// Patch is a parsed unified diff: the changes it makes to existing text
// files, in the order the patch lists them.
type Patch struct {
	files []*FilePatch
}

// FilePatch is the change a patch makes to one file.
type FilePatch struct {
	// Path is the file's path inside the tree, with the first component
	// of the patch's a/ and b/ names stripped (-p1), e.g. "fs/proc/cmdline.c".
	Path  string
	Hunks []Hunk
}

// Hunk is one @@ section: lines to find (context and removals) at about
// OldStart and what to put there instead (context and additions).
type Hunk struct {
	OldStart, OldLines int
	NewStart, NewLines int
	// Section is the text after the closing @@, usually the function.
	Section string
	Lines   []Line
	// line is where the hunk starts in the patch, for errors.
	line int
}

// Line is one line of a hunk. Op is ' ' (context), '-' (removed) or '+'
// (added). Text ends with "\n" unless the patch marked the line
// "\ No newline at end of file".
type Line struct {
	Op   byte
	Text string
}

// Files returns the paths the patch changes, in patch order.
func (p *Patch) Files() []string {
	out := make([]string, len(p.files))
	for i, f := range p.files {
		out[i] = f.Path
	}
	return out
}

// FilePatches returns the per-file changes, in patch order.
func (p *Patch) FilePatches() []*FilePatch {
	return append([]*FilePatch(nil), p.files...)
}

// File returns the change to path, or nil when the patch does not touch it.
func (p *Patch) File(path string) *FilePatch {
	for _, f := range p.files {
		if f.Path == path {
			return f
		}
	}
	return nil
}

// Digest is the hex SHA-256 of the patch's changes in a canonical form:
// each file's path and each hunk's range and lines, in patch order,
// without what ParsePatch ignores (a commit message, "index" lines,
// timestamps, the function diff -p names after @@). The same change
// written by git diff, git format-patch or diff -u -p has one digest.
// Bundles record it (a bundle built on top of an earlier update names
// the earlier update by it).
func (p *Patch) Digest() string {
	h := sha256.New()
	for _, f := range p.files {
		fmt.Fprintf(h, "--- a/%s\n+++ b/%s\n", f.Path, f.Path)
		for _, hk := range f.Hunks {
			fmt.Fprintf(h, "@@ -%d,%d +%d,%d @@\n", hk.OldStart, hk.OldLines, hk.NewStart, hk.NewLines)
			for _, l := range hk.Lines {
				fmt.Fprintf(h, "%c%s", l.Op, l.Text)
				if !strings.HasSuffix(l.Text, "\n") {
					fmt.Fprint(h, "\n\\ No newline at end of file\n")
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ParsePatch parses a unified diff as `git diff`, `git format-patch` or
// `diff -u` write it, with a/ and b/ prefixes stripped as patch -p1 would.
// Text before, between and after the file sections (a commit message,
// "index" lines) is ignored. It refuses what a source livepatch cannot
// be built from: renames and copies, mode changes, new and deleted files,
// binary patches, paths outside the tree, and patches larger than
// MaxPatchSize or changing more than MaxPatchFiles files. Every refusal
// is a *PatchError that wraps one of the Err* sentinels.
func ParsePatch(b []byte) (*Patch, error) {
	if len(b) > MaxPatchSize {
		return nil, &PatchError{Err: ErrPatchTooLarge, Detail: fmt.Sprintf("%d bytes, the limit is %d", len(b), MaxPatchSize)}
	}
	p := &parser{lines: splitLines(b)}
	patch, err := p.parse()
	if err != nil {
		return nil, err
	}
	return patch, nil
}

// parser walks the patch's lines once.
type parser struct {
	lines []string // each with its "\n", except perhaps the last
	i     int      // next line to read
	files []*FilePatch
	seen  map[string]int // path -> line of its header
}

func (p *parser) errorf(line int, file string, sentinel error, format string, args ...any) error {
	return &PatchError{Line: line, Path: file, Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}

func (p *parser) parse() (*Patch, error) {
	p.seen = map[string]int{}
	for p.i < len(p.lines) {
		line := trimEOL(p.lines[p.i])
		switch {
		case strings.HasPrefix(line, "diff --git "):
			if err := p.gitSection(); err != nil {
				return nil, err
			}
		case strings.HasPrefix(line, "--- ") && p.i+1 < len(p.lines) && strings.HasPrefix(p.lines[p.i+1], "+++ "):
			if err := p.plainSection(p.i + 1); err != nil {
				return nil, err
			}
		case strings.HasPrefix(line, "Binary files ") || line == "GIT binary patch":
			return nil, p.errorf(p.i+1, "", ErrBinaryPatch, "%s", line)
		case strings.HasPrefix(line, "@@ "):
			return nil, p.errorf(p.i+1, "", ErrMalformedPatch, "hunk without a ---/+++ file header")
		default:
			p.i++
		}
	}
	if len(p.files) == 0 {
		return nil, &PatchError{Err: ErrEmptyPatch, Detail: "no ---/+++ file sections with hunks found (is this a unified diff?)"}
	}
	return &Patch{files: p.files}, nil
}

// gitSection reads a "diff --git a/X b/Y" header, its extended header
// lines, and then the ---/+++ lines and hunks if there are any.
func (p *parser) gitSection() error {
	start := p.i + 1
	header := trimEOL(p.lines[p.i])
	name := gitHeaderPath(strings.TrimPrefix(header, "diff --git "))
	p.i++
	for p.i < len(p.lines) {
		line := trimEOL(p.lines[p.i])
		n := p.i + 1
		switch {
		case strings.HasPrefix(line, "--- "):
			if p.i+1 >= len(p.lines) || !strings.HasPrefix(p.lines[p.i+1], "+++ ") {
				return p.errorf(n, name, ErrMalformedPatch, "--- line not followed by +++")
			}
			return p.plainSection(start)
		case strings.HasPrefix(line, "diff --git "):
			return p.errorf(start, name, ErrMalformedPatch, "git section without hunks")
		case strings.HasPrefix(line, "new file mode"):
			return p.errorf(n, name, ErrNewFile, "creates a file")
		case strings.HasPrefix(line, "deleted file mode"):
			return p.errorf(n, name, ErrDeletedFile, "deletes a file")
		case strings.HasPrefix(line, "rename from"), strings.HasPrefix(line, "rename to"),
			strings.HasPrefix(line, "copy from"), strings.HasPrefix(line, "copy to"),
			strings.HasPrefix(line, "similarity index"):
			return p.errorf(n, name, ErrRename, "%s", line)
		case strings.HasPrefix(line, "old mode"), strings.HasPrefix(line, "new mode"):
			return p.errorf(n, name, ErrModeChange, "%s", line)
		case strings.HasPrefix(line, "Binary files ") || line == "GIT binary patch":
			return p.errorf(n, name, ErrBinaryPatch, "%s", line)
		case strings.HasPrefix(line, "index "), strings.HasPrefix(line, "dissimilarity index"):
			p.i++
		case strings.HasPrefix(line, "@@ "):
			return p.errorf(n, name, ErrMalformedPatch, "hunk without ---/+++ lines")
		default:
			// The end of an empty git section (e.g. a mode-only change
			// was refused above): what follows belongs to someone else.
			return p.errorf(start, name, ErrMalformedPatch, "git section without hunks")
		}
	}
	return p.errorf(start, name, ErrMalformedPatch, "git section without hunks")
}

// plainSection reads "--- a/X", "+++ b/X" at p.i and the hunks that
// follow. header is the patch line the section starts at, for errors.
func (p *parser) plainSection(header int) error {
	oldLine, newLine := p.i+1, p.i+2
	oldName, err := p.headerPath(trimEOL(p.lines[p.i]), "--- ", oldLine)
	if err != nil {
		return err
	}
	newName, err := p.headerPath(trimEOL(p.lines[p.i+1]), "+++ ", newLine)
	if err != nil {
		return err
	}
	p.i += 2
	switch {
	case oldName == "/dev/null":
		return p.errorf(oldLine, newName, ErrNewFile, "creates a file (--- /dev/null)")
	case newName == "/dev/null":
		return p.errorf(newLine, oldName, ErrDeletedFile, "deletes a file (+++ /dev/null)")
	}
	oldPath, err := p.stripPath(oldName, oldLine)
	if err != nil {
		return err
	}
	newPath, err := p.stripPath(newName, newLine)
	if err != nil {
		return err
	}
	if oldPath != newPath {
		return p.errorf(oldLine, oldPath, ErrRename, "--- names %s and +++ names %s", oldPath, newPath)
	}
	if first, dup := p.seen[newPath]; dup {
		return p.errorf(oldLine, newPath, ErrMalformedPatch, "the file is changed again (first at line %d): merge the sections", first)
	}
	if len(p.files) == MaxPatchFiles {
		return p.errorf(oldLine, newPath, ErrPatchTooLarge, "more than %d files", MaxPatchFiles)
	}
	p.seen[newPath] = header

	fp := &FilePatch{Path: newPath}
	for p.i < len(p.lines) && strings.HasPrefix(p.lines[p.i], "@@ ") {
		h, err := p.hunk(newPath)
		if err != nil {
			return err
		}
		if n := len(fp.Hunks); n > 0 {
			prev := fp.Hunks[n-1]
			if h.OldStart < prev.OldStart+prev.OldLines {
				return p.errorf(h.line, newPath, ErrMalformedPatch, "hunk at old line %d overlaps or precedes the one before (old lines %d-%d)",
					h.OldStart, prev.OldStart, prev.OldStart+prev.OldLines-1)
			}
		}
		fp.Hunks = append(fp.Hunks, h)
	}
	if len(fp.Hunks) == 0 {
		if p.i < len(p.lines) && strings.HasPrefix(p.lines[p.i], "Binary files ") {
			return p.errorf(p.i+1, newPath, ErrBinaryPatch, "%s", trimEOL(p.lines[p.i]))
		}
		return p.errorf(oldLine, newPath, ErrMalformedPatch, "no hunks after the +++ line")
	}
	p.files = append(p.files, fp)
	return nil
}

// hunk reads one "@@ -a,b +c,d @@ section" header and its lines.
func (p *parser) hunk(file string) (Hunk, error) {
	n := p.i + 1
	header := trimEOL(p.lines[p.i])
	h, err := parseHunkHeader(header)
	if err != nil {
		return h, p.errorf(n, file, ErrMalformedPatch, "%v: %q", err, header)
	}
	h.line = n
	p.i++
	oldLeft, newLeft := h.OldLines, h.NewLines
	for oldLeft > 0 || newLeft > 0 {
		if p.i >= len(p.lines) {
			return h, p.errorf(n, file, ErrMalformedPatch, "hunk ends early: the patch ends with %d old and %d new lines missing", oldLeft, newLeft)
		}
		raw := p.lines[p.i]
		var op byte = ' '
		text := ""
		switch {
		case raw == "\n" || raw == "\r\n":
			// A context line whose single space a mailer or editor
			// trimmed, which patch(1) accepts too.
			text = raw
		case raw[0] == ' ' || raw[0] == '-' || raw[0] == '+':
			op, text = raw[0], raw[1:]
		case strings.HasPrefix(raw, `\`):
			return h, p.errorf(p.i+1, file, ErrMalformedPatch, "%q marks no line", trimEOL(raw))
		default:
			return h, p.errorf(p.i+1, file, ErrMalformedPatch, "hunk ends early: %d old and %d new lines missing before %q",
				oldLeft, newLeft, clip(trimEOL(raw), 60))
		}
		switch op {
		case ' ':
			oldLeft--
			newLeft--
		case '-':
			oldLeft--
		case '+':
			newLeft--
		}
		if oldLeft < 0 || newLeft < 0 {
			return h, p.errorf(p.i+1, file, ErrMalformedPatch, "hunk has more lines than its header %q says", header)
		}
		if !strings.HasSuffix(text, "\n") {
			// Only the patch's last line can lack its newline: a file
			// saved without one, which patch(1) reads as if it had it.
			text += "\n"
		}
		p.i++
		if p.i < len(p.lines) && strings.HasPrefix(p.lines[p.i], `\`) {
			// "\ No newline at end of file": the line before has none.
			text = strings.TrimSuffix(text, "\n")
			p.i++
		}
		h.Lines = append(h.Lines, Line{Op: op, Text: text})
	}
	changes := false
	for _, l := range h.Lines {
		changes = changes || l.Op != ' '
	}
	if !changes {
		return h, p.errorf(n, file, ErrMalformedPatch, "hunk changes nothing")
	}
	return h, nil
}

// parseHunkHeader reads "@@ -a[,b] +c[,d] @@[ section]".
func parseHunkHeader(s string) (Hunk, error) {
	var h Hunk
	rest, ok := strings.CutPrefix(s, "@@ -")
	if !ok {
		return h, fmt.Errorf("bad hunk header")
	}
	ranges, section, ok := strings.Cut(rest, " @@")
	if !ok {
		return h, fmt.Errorf("hunk header lacks the closing @@")
	}
	h.Section = strings.TrimSpace(section)
	oldR, newR, ok := strings.Cut(ranges, " +")
	if !ok {
		return h, fmt.Errorf("hunk header lacks the +range")
	}
	var err error
	if h.OldStart, h.OldLines, err = parseRange(oldR); err != nil {
		return h, err
	}
	if h.NewStart, h.NewLines, err = parseRange(newR); err != nil {
		return h, err
	}
	return h, nil
}

// parseRange reads "start[,count]"; count defaults to 1. Sizes are bounded
// by the patch size, so a count larger than that is a lie.
func parseRange(s string) (start, count int, err error) {
	a, b, hasCount := strings.Cut(s, ",")
	if start, err = strconv.Atoi(a); err != nil || start < 0 || start > MaxPatchSize*8 {
		return 0, 0, fmt.Errorf("bad line number %q", a)
	}
	count = 1
	if hasCount {
		if count, err = strconv.Atoi(b); err != nil || count < 0 || count > MaxPatchSize {
			return 0, 0, fmt.Errorf("bad line count %q", b)
		}
	}
	if count > 0 && start == 0 {
		return 0, 0, fmt.Errorf("range %q starts at line 0", s)
	}
	return start, count, nil
}

// headerPath returns the name on a ---/+++ line, without the timestamp
// diff -u appends after a tab.
func (p *parser) headerPath(line, prefix string, n int) (string, error) {
	name := strings.TrimPrefix(line, prefix)
	if i := strings.IndexByte(name, '\t'); i >= 0 {
		name = name[:i]
	}
	name = strings.TrimRight(name, " \r")
	if strings.HasPrefix(name, `"`) {
		return "", p.errorf(n, name, ErrUnsafePath, "quoted file names (with spaces or special characters) are not supported")
	}
	if name == "" {
		return "", p.errorf(n, "", ErrMalformedPatch, "empty file name")
	}
	return name, nil
}

// stripPath drops the first path component (-p1) and refuses names that
// would leave the tree.
func (p *parser) stripPath(name string, n int) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", p.errorf(n, name, ErrUnsafePath, "absolute path")
	}
	_, rel, ok := strings.Cut(name, "/")
	if !ok || rel == "" {
		return "", p.errorf(n, name, ErrUnsafePath, "no a/ or b/ prefix to strip (make the patch with git diff or diff -u a/ b/)")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", p.errorf(n, name, ErrUnsafePath, "path leaves the tree (..)")
		}
	}
	if strings.ContainsRune(rel, 0) || strings.Contains(rel, "\\") {
		return "", p.errorf(n, name, ErrUnsafePath, "path has a NUL or backslash")
	}
	if clean := path.Clean(rel); clean != rel || strings.HasPrefix(rel, "/") {
		return "", p.errorf(n, name, ErrUnsafePath, "path is not clean (want %s)", strings.TrimPrefix(clean, "/"))
	}
	return rel, nil
}

// gitHeaderPath guesses the b/ name of "a/X b/X" for error messages only.
func gitHeaderPath(s string) string {
	if i := strings.LastIndex(s, " b/"); i >= 0 {
		return s[i+3:]
	}
	return s
}

// Apply returns original with fp's hunks applied. Each hunk's context and
// removed lines must match exactly (no fuzz); a hunk is looked for where
// its header says, shifted by how far the hunks before it moved, and then
// up to MaxOffset lines either way, nearest first, but never before the
// end of the hunk before it. An *ApplyError names the file and hunk that
// does not apply, and says when the patch looks applied already.
func Apply(original []byte, fp *FilePatch) ([]byte, error) {
	out, _, err := applyHunks(original, fp)
	return out, err
}

// hunkPositions returns where Apply applies each hunk of fp to original:
// the index (from 0) of the hunk's first line there.
func hunkPositions(original []byte, fp *FilePatch) ([]int, error) {
	_, at, err := applyHunks(original, fp)
	return at, err
}

func applyHunks(original []byte, fp *FilePatch) ([]byte, []int, error) {
	if fp == nil {
		return nil, nil, &ApplyError{Detail: "no file patch"}
	}
	if len(original) > MaxSourceSize {
		return nil, nil, &ApplyError{Path: fp.Path, Detail: fmt.Sprintf("file is %d bytes, the limit is %d", len(original), MaxSourceSize)}
	}
	var positions []int
	lines := splitLines(original)
	var out bytes.Buffer
	out.Grow(len(original) + 1024)
	next := 0  // first line of original not yet copied
	delta := 0 // how far the hunks so far moved from their headers
	for i, h := range fp.Hunks {
		var oldText, newText []string
		for _, l := range h.Lines {
			if l.Op != '+' {
				oldText = append(oldText, l.Text)
			}
			if l.Op != '-' {
				newText = append(newText, l.Text)
			}
		}
		want := h.OldStart - 1 // 0-based index of the hunk's first line
		if h.OldLines == 0 {
			want = h.OldStart // an insertion comes after line OldStart
		}
		want += delta
		at, ok := search(lines, oldText, want, next)
		if !ok {
			return nil, nil, applyFailure(fp.Path, i, h, lines, oldText, newText, want, next)
		}
		positions = append(positions, at)
		for _, l := range lines[next:at] {
			out.WriteString(l)
		}
		for _, t := range newText {
			out.WriteString(t)
		}
		next = at + len(oldText)
		delta = at - (h.OldStart - 1)
		if h.OldLines == 0 {
			delta = at - h.OldStart
		}
	}
	for _, l := range lines[next:] {
		out.WriteString(l)
	}
	return out.Bytes(), positions, nil
}

// search finds old in lines at want, or at the nearest position at most
// MaxOffset away and not before min.
func search(lines, old []string, want, min int) (int, bool) {
	for d := 0; d <= MaxOffset; d++ {
		if at := want - d; at >= min && matchAt(lines, old, at) {
			return at, true
		}
		if at := want + d; d > 0 && at >= min && matchAt(lines, old, at) {
			return at, true
		}
		if want-d < min && want+d > len(lines) {
			break
		}
	}
	return 0, false
}

func matchAt(lines, want []string, at int) bool {
	if at < 0 || at+len(want) > len(lines) {
		return false
	}
	for i, w := range want {
		if lines[at+i] != w {
			return false
		}
	}
	return true
}

// applyFailure explains why hunk i does not apply: already applied, or
// the first line that differs where the hunk belongs.
func applyFailure(file string, i int, h Hunk, lines, oldText, newText []string, want, min int) error {
	e := &ApplyError{Path: file, Hunk: i + 1, Line: h.OldStart}
	if _, ok := search(lines, newText, want, min); ok && len(newText) > 0 {
		e.Detail = "its result is already there: is the patch applied already?"
		return e
	}
	e.Detail = fmt.Sprintf("context not found within %d lines", MaxOffset)
	for j, w := range oldText {
		k := want + j
		if k < 0 || k >= len(lines) {
			e.Detail += fmt.Sprintf("; the file has %d lines", len(lines))
			break
		}
		if lines[k] != w {
			e.Detail += fmt.Sprintf("; line %d is %q, the patch expects %q", k+1, clip(trimEOL(lines[k]), 80), clip(trimEOL(w), 80))
			break
		}
	}
	return e
}

// splitLines splits b after each "\n"; the last line may lack one.
func splitLines(b []byte) []string {
	var lines []string
	s := string(b)
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i+1])
		s = s[i+1:]
	}
	return lines
}

func trimEOL(s string) string {
	return strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
