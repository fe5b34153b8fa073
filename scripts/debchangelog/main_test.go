package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repo makes a git repository with commits and tags, each commit a second
// after the one before.
func repo(t *testing.T, steps ...string) string {
	t.Helper()
	dir := t.TempDir()
	n := 0
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		date := "2026-11-27T12:00:0" + string(rune('0'+n)) + "Z"
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=A", "GIT_AUTHOR_EMAIL=a@example.org", "GIT_COMMITTER_NAME=A",
			"GIT_COMMITTER_EMAIL=a@example.org", "GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date, "GIT_CONFIG_GLOBAL=/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	run("init", "-q", "-b", "main")
	for _, s := range steps {
		if tag, ok := strings.CutPrefix(s, "tag "); ok {
			run("tag", tag)
			continue
		}
		n++
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		run("add", "f")
		run("commit", "-q", "-m", s)
	}
	return dir
}

func changelog(t *testing.T, dir, version string) string {
	t.Helper()
	entries, err := history(gitRunner(dir), version)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := write(&b, "splicefleet", "Jane Doe <jane@example.org>", entries); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestChangelogFromTags: commits after the newest tag make an UNRELEASED
// entry of the version built; each tag an entry of its own commits.
// dpkg-parsechangelog reads the result.
func TestChangelogFromTags(t *testing.T) {
	dir := repo(t, "all: start", "tag v0.1.0", "agent: gossip", "rollout: stages", "tag v0.2.0-rc1",
		"cmd: a subject long enough that it has to be wrapped onto a second line of the entry", "tag v0.2.0", "docs: explain")
	got := changelog(t, dir, "0.2.0+git1.abc")
	want := `splicefleet (0.2.0+git1.abc) UNRELEASED; urgency=medium

  * docs: explain

 -- Jane Doe <jane@example.org>  Fri, 27 Nov 2026 12:00:05 +0000

splicefleet (0.2.0) unstable; urgency=medium

  * cmd: a subject long enough that it has to be wrapped onto a second line
    of the entry

 -- Jane Doe <jane@example.org>  Fri, 27 Nov 2026 12:00:04 +0000

splicefleet (0.2.0~rc1) unstable; urgency=medium

  * rollout: stages
  * agent: gossip

 -- Jane Doe <jane@example.org>  Fri, 27 Nov 2026 12:00:03 +0000

splicefleet (0.1.0) unstable; urgency=medium

  * all: start

 -- Jane Doe <jane@example.org>  Fri, 27 Nov 2026 12:00:01 +0000
`
	if got != want {
		t.Errorf("changelog:\n%s\nwant:\n%s", got, want)
	}
	file := filepath.Join(t.TempDir(), "changelog")
	if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dpkg-parsechangelog", "-l", file, "-S", "Version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "0.2.0+git1.abc" {
		t.Errorf("dpkg-parsechangelog -S Version: %v\n%s", err, out)
	}
	out, err = exec.Command("dpkg-parsechangelog", "-l", file, "--all", "-S", "Changes").CombinedOutput()
	for _, v := range []string{"0.2.0+git1.abc", "0.2.0", "0.2.0~rc1", "0.1.0"} {
		if err != nil || !strings.Contains(string(out), "splicefleet ("+v+") ") {
			t.Errorf("dpkg-parsechangelog --all lacks %s: %v\n%s", v, err, out)
		}
	}
}

// TestChangelogAtATag: built at a release tag, the first entry is the
// release; with no tag, one entry holds the whole history.
func TestChangelogAtATag(t *testing.T) {
	got := changelog(t, repo(t, "all: start", "tag v0.1.0", "agent: gossip", "tag v0.2.0"), "0.2.0")
	if !strings.HasPrefix(got, "splicefleet (0.2.0) unstable; urgency=medium\n\n  * agent: gossip\n") || strings.Count(got, " -- ") != 2 {
		t.Errorf("changelog at a tag:\n%s", got)
	}
	got = changelog(t, repo(t, "all: start", "agent: gossip"), "0.1.0~git1.abc")
	if !strings.HasPrefix(got, "splicefleet (0.1.0~git1.abc) UNRELEASED; urgency=medium\n\n  * agent: gossip\n  * all: start\n") || strings.Count(got, " -- ") != 1 {
		t.Errorf("changelog without tags:\n%s", got)
	}
}

func TestChangelogNeedsAMaintainer(t *testing.T) {
	for _, m := range []string{"", "Jane Doe", "<jane@example.org>", "Jane <jane>"} {
		if err := write(&strings.Builder{}, "splicefleet", m, []entry{{Version: "1", Changes: []string{"x"}}}); err == nil || !strings.Contains(err.Error(), "want NAME <EMAIL>") {
			t.Errorf("maintainer %q: %v", m, err)
		}
	}
}
