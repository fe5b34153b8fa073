// Command debchangelog writes the Debian package's changelog
// (/usr/share/doc/splicefleet/changelog.gz once compressed) from the
// repository's history, in the format dpkg-parsechangelog reads.
//
// splicefleet is packaged as a native Debian package (its version has no
// Debian revision), so this one changelog is both the upstream and the
// Debian one. Each release tag (vX.Y.Z) is an entry listing the subjects
// of the commits since the tag before it; commits after the newest tag
// make a first entry for the version being built, whose distribution is
// UNRELEASED, as Debian marks a version not yet released. The history is
// the record, so nothing is kept by hand and the changelog cannot fall
// behind the code. Entries are dated by their commit, so the same commit
// always gives the same file. It runs git to read the history (tags,
// logs, commit times): git is the one reader of a repository's history,
// so this program is excused from the rule that keeps os/exec in cmd.
//
// Usage: debchangelog -version VERSION -maintainer 'NAME <EMAIL>' [-repo DIR]
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	version := flag.String("version", "", "the version being packaged (the first entry's)")
	maintainer := flag.String("maintainer", "", "who signs the entries: NAME <EMAIL>")
	repo := flag.String("repo", ".", "the git repository")
	flag.Parse()
	if *version == "" || *maintainer == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: debchangelog -version VERSION -maintainer 'NAME <EMAIL>' [-repo DIR]")
		os.Exit(2)
	}
	entries, err := history(gitRunner(*repo), *version)
	if err == nil {
		err = write(os.Stdout, "splicefleet", *maintainer, entries)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "debchangelog:", err)
		os.Exit(1)
	}
}

// entry is one version's changes.
type entry struct {
	Version      string
	Distribution string
	Date         time.Time
	Changes      []string
}

// git runs a git command and returns its output.
type git func(args ...string) (string, error)

func gitRunner(repo string) git {
	return func(args ...string) (string, error) {
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
		}
		return string(out), nil
	}
}

var releaseTag = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+([-.+~][0-9A-Za-z.~+-]*)?$`)

// tagVersion is a release tag's package version, spelled as the Makefile
// spells it: no v, and a pre-release's hyphen as ~ so that 1.0.0-rc1
// sorts before 1.0.0.
func tagVersion(tag string) string {
	return strings.ReplaceAll(strings.TrimPrefix(tag, "v"), "-", "~")
}

// history reads the entries, newest first: the version being built
// (unless HEAD is the newest tag), then one per release tag.
func history(g git, version string) ([]entry, error) {
	out, err := g("tag", "--list", "v*", "--merged", "HEAD", "--sort=-v:refname")
	if err != nil {
		return nil, err
	}
	// Newest first by history, not by name: git sorts v1.0.0-rc1 after
	// v1.0.0. A tag that reaches more commits is later; tags of one
	// commit keep git's version order.
	var tags []string
	reach := map[string]int{}
	for _, t := range strings.Fields(out) {
		if !releaseTag.MatchString(t) {
			continue
		}
		n, err := g("rev-list", "--count", t)
		if err != nil {
			return nil, err
		}
		if reach[t], err = strconv.Atoi(strings.TrimSpace(n)); err != nil {
			return nil, fmt.Errorf("git rev-list --count %s: %q", t, n)
		}
		tags = append(tags, t)
	}
	slices.SortStableFunc(tags, func(a, b string) int { return reach[b] - reach[a] })
	head, err := g("rev-parse", "HEAD")
	if err != nil {
		return nil, err
	}
	head = strings.TrimSpace(head)

	var entries []entry
	if len(tags) == 0 || !sameCommit(g, tags[0], head) {
		var since string
		if len(tags) > 0 {
			since = tags[0]
		}
		e, err := changes(g, since, "HEAD")
		if err != nil {
			return nil, err
		}
		e.Version, e.Distribution = version, "UNRELEASED"
		entries = append(entries, e)
	}
	for i, tag := range tags {
		var since string
		if i+1 < len(tags) {
			since = tags[i+1]
		}
		e, err := changes(g, since, tag)
		if err != nil {
			return nil, err
		}
		e.Version, e.Distribution = tagVersion(tag), "unstable"
		if i == 0 && len(entries) == 0 {
			// HEAD is this release: the version built is its version.
			e.Version = version
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return nil, errors.New("no commits")
	}
	return entries, nil
}

func sameCommit(g git, tag, commit string) bool {
	out, err := g("rev-list", "-n", "1", tag)
	return err == nil && strings.TrimSpace(out) == commit
}

// changes reads the commits in since..until (all up to until when since
// is empty), leaving out merges, and dates the entry by until's commit.
func changes(g git, since, until string) (entry, error) {
	rng := until
	if since != "" {
		rng = since + ".." + until
	}
	out, err := g("log", "--no-merges", "--format=%s", rng)
	if err != nil {
		return entry{}, err
	}
	var e entry
	for _, s := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if s = strings.TrimSpace(s); s != "" {
			e.Changes = append(e.Changes, s)
		}
	}
	if len(e.Changes) == 0 {
		e.Changes = []string{"Release " + tagVersion(until) + " (no changes since " + since + ")."}
	}
	ct, err := g("log", "-1", "--format=%ct", until)
	if err != nil {
		return entry{}, err
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(ct), 10, 64)
	if err != nil {
		return entry{}, fmt.Errorf("commit time of %s: %q", until, ct)
	}
	e.Date = time.Unix(secs, 0).UTC()
	return e, nil
}

var maintainerForm = regexp.MustCompile(`^[^<>]+ <[^<>@\s]+@[^<>@\s]+>$`)

// write renders the entries in the Debian changelog format.
func write(w io.Writer, pkg, maintainer string, entries []entry) error {
	if !maintainerForm.MatchString(maintainer) {
		return fmt.Errorf("maintainer %q: want NAME <EMAIL>", maintainer)
	}
	var b bytes.Buffer
	for i, e := range entries {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s (%s) %s; urgency=medium\n\n", pkg, e.Version, e.Distribution)
		for _, c := range e.Changes {
			for j, l := range wrap(c, 72) {
				if j == 0 {
					fmt.Fprintf(&b, "  * %s\n", l)
				} else {
					fmt.Fprintf(&b, "    %s\n", l)
				}
			}
		}
		fmt.Fprintf(&b, "\n -- %s  %s\n", maintainer, e.Date.Format(time.RFC1123Z))
	}
	_, err := w.Write(b.Bytes())
	return err
}

// wrap breaks text into lines of at most width columns, between words (a
// longer word gets a line of its own).
func wrap(text string, width int) []string {
	var lines []string
	var cur string
	for _, word := range strings.Fields(text) {
		switch {
		case cur == "":
			cur = word
		case len(cur)+1+len(word) <= width:
			cur += " " + word
		default:
			lines = append(lines, cur)
			cur = word
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}
