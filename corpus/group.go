package corpus

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Unit is one fix of a corpus: the hunks of one upstream change, or the
// hunks of one file no change could be attributed to.
type Unit struct {
	// ID names the unit in results: "c0042" for the 43rd change the
	// changelog lists, "f:PATH" for a file's unattributed hunks, or the
	// patch file's name for a corpus of patches.
	ID string `json:"id"`
	// Subject is the change's subject, or "" for a file unit.
	Subject string `json:"subject,omitempty"`
	// CVEs are the change's CVE names.
	CVEs []string `json:"cves,omitempty"`
	// Files are the files the unit changes, sorted.
	Files []string `json:"files"`
	// Hunks counts the unit's hunks.
	Hunks int `json:"hunks"`
	// Took are the hunks the unit took along from other units: the
	// declarations and new definitions its added lines need (see Group).
	Took []TakenHunk `json:"took,omitempty"`
	// Patch is the unit as a unified diff with a/ and b/ paths.
	Patch []byte `json:"-"`
	// With are the other units of the update this one was put together
	// with because it does not build without them (see Widen).
	With []string `json:"with,omitempty"`

	// g is the grouping the unit came from and refs its hunks, its own
	// and those taken along; nil for a unit read from a patch file.
	g    *grouping
	refs []hunkRef
}

// grouping is what Group knew of the whole update, kept for Widen.
type grouping struct {
	files []FileDiff
	ids   []string
	// groups are the units' hunks, their own and those taken along;
	// owner is the unit each hunk was attributed to.
	groups [][]hunkRef
	owner  map[hunkRef]int
	decls  map[hunkRef]hunkDecls
}

// Attribution scores: how strongly a hunk is taken to belong to a change.
const (
	scorePath      = 10 // the subject names the file's path ("lib/ucs2_string.c: ...")
	scoreFuncHead  = 8  // an identifier of the subject is the hunk's function
	scoreIdentLine = 5  // ... or appears in a changed line
	scoreIdentCtx  = 2  // ... or in a context line
	scoreStem      = 4  // a word of the subject's prefix is the file's name
	scoreDir       = 2  // ... or one of its folders
	// minScore is what a hunk needs to be attributed at all: more than a
	// folder's name alone; the best change must also score strictly more
	// than the second best.
	minScore = 4
)

// words that name no place in the tree even when a folder has the name.
var generic = map[string]bool{
	"drivers": true, "include": true, "linux": true, "arch": true, "uapi": true, "common": true,
	"core": true, "revert": true, "fix": true, "fixes": true, "staging": true,
}

var (
	identToken = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*(\(\))?`)
	revert     = regexp.MustCompile(`^Revert "(.*)"$`)
)

// subjectKeys is what a subject offers for matching.
type subjectKeys struct {
	paths  []string // path-like prefixes ("lib/ucs2_string.c", "include/linux/list.h")
	words  []string // prefix words, lower case, '-' as '_' ("alsa", "aloop")
	idents []string // identifiers of the description that look like code
}

func keysOf(subject string) subjectKeys {
	var k subjectKeys
	if m := revert.FindStringSubmatch(subject); m != nil {
		subject = m[1]
	}
	// The prefix is everything before the last ": " that is followed
	// by the description.
	prefix, desc := "", subject
	if i := strings.LastIndex(subject, ": "); i >= 0 {
		prefix, desc = subject[:i], subject[i+2:]
	}
	for _, part := range strings.FieldsFunc(prefix, func(r rune) bool { return r == ':' || r == ',' }) {
		if strings.Contains(part, "/") || strings.HasSuffix(part, ".c") || strings.HasSuffix(part, ".h") {
			k.paths = append(k.paths, strings.Trim(part, "/"))
		}
		for _, w := range strings.Split(part, "/") {
			w = normWord(w)
			w = strings.TrimSuffix(strings.TrimSuffix(w, ".c"), ".h")
			if w != "" && !generic[w] {
				k.words = append(k.words, w)
			}
			if strings.Contains(w, "_") {
				k.idents = append(k.idents, w)
			}
		}
	}
	for _, t := range identToken.FindAllString(desc, -1) {
		call := strings.HasSuffix(t, "()")
		t = strings.TrimSuffix(t, "()")
		if call || strings.Contains(strings.Trim(t, "_"), "_") {
			k.idents = append(k.idents, t)
		}
	}
	return k
}

func normWord(w string) string {
	return strings.NewReplacer("-", "_", " ", "_").Replace(strings.ToLower(strings.TrimSpace(w)))
}

// fileScore is how well a subject's prefix names the file.
func (k subjectKeys) fileScore(file string) int {
	score := 0
	for _, p := range k.paths {
		if file == p || strings.HasPrefix(file, p+"/") || strings.HasSuffix(file, "/"+p) {
			score += scorePath
		}
	}
	dirs := strings.Split(path.Dir(file), "/")
	stem := normWord(strings.TrimSuffix(path.Base(file), path.Ext(file)))
	for _, w := range k.words {
		switch {
		case w == stem:
			score += scoreStem
		case slices.ContainsFunc(dirs, func(d string) bool { return normWord(d) == w }):
			score += scoreDir
		}
	}
	return score
}

// hunkScore is how well a subject's identifiers name the hunk.
func (k subjectKeys) hunkScore(h *Hunk, changed []string) int {
	best := 0
	for _, id := range k.idents {
		s := 0
		switch {
		case h.Func == id:
			s = scoreFuncHead
		case containsIdent(changed, id):
			s = scoreIdentLine
		case containsIdent(h.Lines, id):
			s = scoreIdentCtx
		}
		best = max(best, s)
	}
	return best
}

func containsIdent(lines []string, id string) bool {
	for _, l := range lines {
		for i := strings.Index(l, id); i >= 0; {
			end := i + len(id)
			if (i == 0 || !isIdentByte(l[i-1])) && (end == len(l) || !isIdentByte(l[end])) {
				return true
			}
			j := strings.Index(l[i+1:], id)
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	return false
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// Group splits a tree diff into units, one per change of the changelog
// that some hunk is attributed to, and one per file for the hunks no
// change could be attributed to. Attribution is a heuristic, because the
// changelog lists subjects, not diffs: a hunk goes to the change whose
// subject names it best (the file's path, words of the subject's prefix
// that are the file's name or folders, identifiers of the subject that
// are the hunk's function or appear in its lines; see the score
// constants), when that change scores at least minScore and strictly
// more than every other. Changes no hunk is attributed to make no unit.
// Units come in changelog order, then file units by path.
//
// Then every unit takes along, as a copy, the hunks of other units that
// newly declare or define what its added lines use and the older
// versions of its files do not name (a prototype, a static inline, a
// macro, a type, a struct member or enumerator, a new function), so it
// builds against the older tree by itself; see Unit.Took. old is the
// older tree (nil: the hunks' diff -p context stands in for the files).
func Group(files []FileDiff, changes []Change, old fs.FS) []Unit {
	// Pieces (pieces.go) are added to the files' hunks: the caller's
	// slices stay as they are.
	files = slices.Clone(files)
	for i := range files {
		files[i].Hunks = slices.Clip(files[i].Hunks)
	}
	byChange, byFile := attribute(files, changes)
	ids, subject, groups := unitGroups(files, changes, byChange, byFile)
	g := &grouping{files: files, ids: ids, groups: groups, owner: map[hunkRef]int{}}
	for gi, hs := range groups {
		for _, r := range hs {
			g.owner[r] = gi
		}
	}
	taken, decls := takeAlong(files, groups, ids, old)
	g.decls = decls
	units := make([]Unit, len(groups))
	for gi, refs := range groups {
		units[gi] = refsUnit(ids[gi], subject[gi], files, refs)
		units[gi].Took = taken[gi]
		units[gi].g, units[gi].refs = g, refs
	}
	return units
}

// refsUnit makes the unit of the given hunks (a hunk of -1: a binary
// file).
func refsUnit(id string, c Change, files []FileDiff, refs []hunkRef) Unit {
	perFile := map[int][]int{}
	var order []int
	for _, r := range refs {
		if _, ok := perFile[r.file]; !ok {
			order = append(order, r.file)
			perFile[r.file] = nil
		}
		if r.hunk >= 0 && !slices.Contains(perFile[r.file], r.hunk) {
			perFile[r.file] = append(perFile[r.file], r.hunk)
		}
	}
	// A piece is left out where the unit has the hunk it copies from.
	for fi, idx := range perFile {
		has := map[int]bool{}
		for _, i := range idx {
			has[i] = true
		}
		perFile[fi] = slices.DeleteFunc(idx, func(i int) bool {
			src := files[fi].Hunks[i].pieceOf - 1
			return src >= 0 && has[src]
		})
	}
	return makeUnit(id, c, files, order, perFile)
}

// attribute gives each hunk to the change whose subject names it best,
// when one does well enough (byChange, by change index), or leaves it to
// its file (byFile, by file index; a binary file has an entry with no
// hunks).
func attribute(files []FileDiff, changes []Change) (map[int][]hunkRef, map[int][]int) {
	keys := make([]subjectKeys, len(changes))
	for i, c := range changes {
		keys[i] = keysOf(c.Subject)
	}
	byChange := map[int][]hunkRef{}
	byFile := map[int][]int{}
	for fi := range files {
		f := &files[fi]
		fileScores := make([]int, len(changes))
		for ci := range changes {
			fileScores[ci] = keys[ci].fileScore(f.Path)
		}
		for hi := range f.Hunks {
			h := &f.Hunks[hi]
			changed := h.Changed()
			best, second, who := 0, 0, -1
			for ci := range changes {
				s := fileScores[ci]
				if s > 0 {
					s += keys[ci].hunkScore(h, changed)
				} else if h.Func != "" && slices.Contains(keys[ci].idents, h.Func) {
					// An identifier alone attributes a hunk in a file
					// the subject's prefix does not point at only when
					// it is the hunk's function.
					s = scoreFuncHead
				}
				switch {
				case s > best:
					best, second, who = s, best, ci
				case s > second:
					second = s
				}
			}
			if best >= minScore && best > second {
				byChange[who] = append(byChange[who], hunkRef{fi, hi})
			} else {
				byFile[fi] = append(byFile[fi], hi)
			}
		}
		if len(f.Hunks) == 0 {
			byFile[fi] = nil // binary: a unit of its own, with no hunks
		}
	}
	return byChange, byFile
}

// unitGroups orders the units: changes in changelog order, then the
// files' remainders by path; it returns each unit's id, change and hunks.
func unitGroups(files []FileDiff, changes []Change, byChange map[int][]hunkRef, byFile map[int][]int) ([]string, []Change, [][]hunkRef) {
	var (
		ids     []string
		subject []Change
		groups  [][]hunkRef
	)
	for ci, c := range changes {
		if len(byChange[ci]) == 0 {
			continue
		}
		ids = append(ids, fmt.Sprintf("c%04d", ci))
		subject = append(subject, c)
		groups = append(groups, byChange[ci])
	}
	var rest []int
	for fi := range byFile {
		rest = append(rest, fi)
	}
	sort.Slice(rest, func(i, j int) bool { return files[rest[i]].Path < files[rest[j]].Path })
	for _, fi := range rest {
		ids = append(ids, "f:"+files[fi].Path)
		subject = append(subject, Change{})
		var g []hunkRef
		for _, hi := range byFile[fi] {
			g = append(g, hunkRef{fi, hi})
		}
		if g == nil {
			g = []hunkRef{{fi, -1}} // a binary file
		}
		groups = append(groups, g)
	}
	return ids, subject, groups
}

func makeUnit(id string, c Change, files []FileDiff, order []int, hunks map[int][]int) Unit {
	u := Unit{ID: id, Subject: c.Subject, CVEs: c.CVEs}
	sort.Slice(order, func(i, j int) bool { return files[order[i]].Path < files[order[j]].Path })
	var b bytes.Buffer
	for _, fi := range order {
		f := &files[fi]
		u.Files = append(u.Files, f.Path)
		idx := slices.Clone(hunks[fi])
		// In the order of the old file: a piece comes after the hunks of
		// the diff.
		slices.SortFunc(idx, func(a, b int) int {
			if d := f.Hunks[a].OldStart - f.Hunks[b].OldStart; d != 0 {
				return d
			}
			return a - b
		})
		u.Hunks += len(idx)
		if f.Binary {
			fmt.Fprintf(&b, "Binary files a/%s and b/%s differ\n", f.Path, f.Path)
			continue
		}
		f.writePatch(&b, idx)
	}
	u.Patch = b.Bytes()
	return u
}
