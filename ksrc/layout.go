package ksrc

import (
	"maps"
	"regexp"
	"slices"
)

// aggregateRe reads the tag of a struct or union definition from a
// scanned item's tokens ("struct nft_table { ...", "typedef struct x {").
var aggregateRe = regexp.MustCompile(`^(?:typedef )?(struct|union) ([A-Za-z_]\w*) (?:__\w+ (?:\( [^{]*\) )?)*\{`)

// layoutChanges names the structs and unions of a header whose bodies
// the patch changes on a line with code (a member added, removed or
// retyped; a comment does not count), in the order of the header. The
// kernel's objects of such a type, and every function not replaced, keep
// the old layout: no livepatch carries that, however few units read the
// header. Text the scanner cannot read names nothing.
func layoutChanges(before, after []byte, fp *FilePatch) []string {
	at, err := hunkPositions(before, fp)
	if err != nil {
		return nil
	}
	oldMarks, newMarks, _ := changedLines(fp, at)
	var out []string
	for side, text := range [][]byte{before, after} {
		sc, err := scanHeader(text)
		if err != nil {
			continue
		}
		marks := oldMarks
		if side == 1 {
			marks = newMarks
		}
		for _, l := range slices.Sorted(maps.Keys(marks)) {
			for _, i := range sc.owners[l] {
				it := sc.items[i]
				m := aggregateRe.FindStringSubmatch(it.text)
				if it.kind != itemDecl || m == nil || l <= it.first || l >= it.last {
					continue
				}
				if name := m[1] + " " + m[2]; !slices.Contains(out, name) {
					out = append(out, name)
				}
			}
		}
	}
	return out
}
