package corpus

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Change is one item of a Debian changelog entry: an upstream commit a
// stable update merged (listed by its subject), or a change of Debian's
// own.
type Change struct {
	// Version is the Debian upload that lists the change, e.g. "6.1.190-1".
	Version string `json:"version"`
	// Subject is the item's text on one line, without the architecture tag
	// and the CVE list, e.g. "ALSA: aloop: Fix racy access at PCM trigger".
	Subject string `json:"subject"`
	// Arch is the architecture tag Debian puts in front ("x86", "powerpc*"),
	// or "".
	Arch string `json:"arch,omitempty"`
	// CVEs are the CVE names the item lists.
	CVEs []string `json:"cves,omitempty"`
	// Upstream says the item is listed under "New upstream stable update".
	Upstream bool `json:"upstream,omitempty"`
}

// Entry is one upload in a Debian changelog.
type Entry struct {
	Version string
	Changes []Change
}

// ErrChangelog is returned for changelog text that cannot be read.
var ErrChangelog = errors.New("changelog")

var (
	entryHeader = regexp.MustCompile(`^([a-z0-9][a-z0-9.+-]*) \(([^)\s]+)\) `)
	cveName     = regexp.MustCompile(`CVE-[0-9]{4}-[0-9]+`)
	cveList     = regexp.MustCompile(`\s*\((CVE-[0-9]{4}-[0-9]+[,; ]*)+\)\s*$`)
	archTag     = regexp.MustCompile(`^\[([^\]]+)\]\s*`)
)

// item is a bullet being read: its indentation, bullet and text.
type item struct {
	indent int
	bullet byte
	text   string
}

// ParseChangelog reads a Debian changelog (debian/changelog,
// changelog.Debian) into its entries, newest first as written. Each
// bullet ("* " or "- ") becomes a Change, its continuation lines joined,
// except a bullet that has bullets under it (such as "New upstream stable
// update:"), which only marks its children: the children of a "New
// upstream stable update" item are Upstream. Web addresses under such an
// item are not changes.
func ParseChangelog(b []byte) ([]Entry, error) {
	var entries []Entry
	var cur *Entry
	var stack []item // open bullets, outermost first
	var pending *item
	var upstream bool
	flush := func() {
		if pending == nil || cur == nil {
			pending = nil
			return
		}
		cur.Changes = append(cur.Changes, newChange(cur.Version, pending.text, upstream && pending.bullet == '-'))
		pending = nil
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t")
		if m := entryHeader.FindStringSubmatch(line); m != nil {
			flush()
			entries = append(entries, Entry{Version: m[2]})
			cur = &entries[len(entries)-1]
			stack, upstream = nil, false
			continue
		}
		if strings.HasPrefix(line, " -- ") {
			flush()
			stack, upstream = nil, false
			continue
		}
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" {
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("%w: line %d: text before the first entry header", ErrChangelog, n)
		}
		indent := len(line) - len(trimmed)
		if len(trimmed) >= 2 && (trimmed[0] == '*' || trimmed[0] == '-') && trimmed[1] == ' ' {
			// A new bullet: the one pending becomes a parent when this
			// one is deeper, else it was a leaf.
			if pending != nil && indent > pending.indent {
				stack = append(stack, *pending)
				pending = nil
			} else {
				flush()
			}
			for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
				stack = stack[:len(stack)-1]
			}
			upstream = false
			for _, p := range stack {
				if strings.Contains(strings.ToLower(p.text), "new upstream stable update") ||
					strings.Contains(strings.ToLower(p.text), "new upstream release") {
					upstream = true
				}
			}
			pending = &item{indent: indent, bullet: trimmed[0], text: strings.TrimSpace(trimmed[2:])}
			continue
		}
		if strings.HasPrefix(trimmed, "[ ") && strings.HasSuffix(trimmed, " ]") {
			// A maintainer's name: the items after it are theirs.
			flush()
			stack, upstream = nil, false
			continue
		}
		if strings.HasPrefix(trimmed, "https://") || strings.HasPrefix(trimmed, "http://") {
			continue
		}
		if pending != nil {
			pending.text += " " + trimmed
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrChangelog, err)
	}
	flush()
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: no entries", ErrChangelog)
	}
	return entries, nil
}

func newChange(version, text string, upstream bool) Change {
	c := Change{Version: version, Upstream: upstream, CVEs: cveName.FindAllString(text, -1)}
	text = strings.TrimSpace(cveList.ReplaceAllString(text, ""))
	if m := archTag.FindStringSubmatch(text); m != nil {
		c.Arch = m[1]
		text = text[len(m[0]):]
	}
	c.Subject = text
	return c
}

// Between returns the changes of the uploads after from up to and
// including to, in the changelog's order: what an update from the package
// at version from to the one at version to brings. Both versions must be
// entries of the changelog, to the newer.
func Between(entries []Entry, from, to string) ([]Change, error) {
	start, end := -1, -1
	for i, e := range entries {
		if e.Version == to && start < 0 {
			start = i
		}
		if e.Version == from && end < 0 {
			end = i
		}
	}
	switch {
	case start < 0:
		return nil, fmt.Errorf("%w: no entry for %s", ErrChangelog, to)
	case end < 0:
		return nil, fmt.Errorf("%w: no entry for %s", ErrChangelog, from)
	case end <= start:
		return nil, fmt.Errorf("%w: %s is not older than %s in the changelog", ErrChangelog, from, to)
	}
	var out []Change
	for _, e := range entries[start:end] {
		out = append(out, e.Changes...)
	}
	return out, nil
}
