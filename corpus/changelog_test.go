package corpus

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

// testdata/changelog.Debian is an excerpt of Debian's changelog of
// linux-source-6.1 6.1.190-1: the start and end of the 6.1.190-1 entry,
// the start of 6.1.187-1, and the header of 6.1.180-1.
func readChangelog(t *testing.T) []Entry {
	t.Helper()
	b, err := os.ReadFile("testdata/changelog.Debian")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ParseChangelog(b)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func findChange(cs []Change, prefix string) (Change, bool) {
	i := slices.IndexFunc(cs, func(c Change) bool { return strings.HasPrefix(c.Subject, prefix) })
	if i < 0 {
		return Change{}, false
	}
	return cs[i], true
}

func TestParseChangelog(t *testing.T) {
	entries := readChangelog(t)
	var versions []string
	for _, e := range entries {
		versions = append(versions, e.Version)
	}
	if !slices.Equal(versions, []string{"6.1.190-1", "6.1.187-1", "6.1.180-1"}) {
		t.Fatalf("versions = %v", versions)
	}
	cs := entries[0].Changes
	if len(cs) != 11 {
		t.Errorf("6.1.190-1 lists %d changes in the excerpt, want 11: %v", len(cs), cs)
	}
	first := cs[0]
	if first.Subject != "ALSA: aloop: Fix racy access at PCM trigger" || !slices.Equal(first.CVEs, []string{"CVE-2026-23191"}) || !first.Upstream {
		t.Errorf("first change = %+v", first)
	}
	// A subject continued on the next line, with its CVE there.
	if c, ok := findChange(cs, "timers/itimer:"); !ok || c.Subject != "timers/itimer: Zero-init old itimerval before copy to userspace" ||
		!slices.Equal(c.CVEs, []string{"CVE-2026-89765"}) {
		t.Errorf("continued change = %+v, %v", c, ok)
	}
	if c, ok := findChange(cs, "ALSA: hda:"); !ok || c.Subject != "ALSA: hda: Fix missing pointer check in hda_component_manager_init function" {
		t.Errorf("continued subject = %q", c.Subject)
	}
	// The architecture tag is split off.
	if c, ok := findChange(cs, "pseries/iommu"); !ok || c.Arch != "powerpc*" || c.Subject != "pseries/iommu: switch to Default DMA window during kdump" {
		t.Errorf("tagged change = %+v, %v", c, ok)
	}
	// Debian's own change, after the maintainer's name, is not upstream.
	last := cs[len(cs)-1]
	if last.Subject != "exec: Cleanup POSIX timers right after de_thread()" || last.Upstream || !slices.Equal(last.CVEs, []string{"CVE-2026-98260"}) {
		t.Errorf("last change = %+v", last)
	}
	for _, e := range entries {
		for _, c := range e.Changes {
			if strings.Contains(c.Subject, "https://") || strings.Contains(c.Subject, "New upstream stable update") || strings.Contains(c.Subject, "Bonaccorso") {
				t.Errorf("%s: %q is not a change", e.Version, c.Subject)
			}
		}
	}
	if c, ok := findChange(entries[1].Changes, "Revert"); !ok || c.Subject != `Revert "x86/bugs: Make Safe-RET robust against interrupt injection"` {
		t.Errorf("revert = %+v, %v", c, ok)
	}
}

func TestBetween(t *testing.T) {
	entries := readChangelog(t)
	got, err := Between(entries, "6.1.187-1", "6.1.190-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(entries[0].Changes) || got[0].Version != "6.1.190-1" {
		t.Errorf("187 -> 190 gave %d changes, want the %d of 6.1.190-1", len(got), len(entries[0].Changes))
	}
	got, err = Between(entries, "6.1.180-1", "6.1.190-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := len(entries[0].Changes) + len(entries[1].Changes); len(got) != want {
		t.Errorf("180 -> 190 gave %d changes, want %d", len(got), want)
	}
	for _, bad := range [][2]string{{"6.1.187-1", "6.1.999-1"}, {"6.1.100-1", "6.1.190-1"}, {"6.1.190-1", "6.1.187-1"}} {
		if _, err := Between(entries, bad[0], bad[1]); !errors.Is(err, ErrChangelog) {
			t.Errorf("Between(%s, %s) = %v, want ErrChangelog", bad[0], bad[1], err)
		}
	}
}

func TestParseChangelogRefusals(t *testing.T) {
	for name, in := range map[string]string{
		"empty":             "",
		"text before entry": "  * a change\n\nlinux (1.0-1) unstable; urgency=low\n",
	} {
		if _, err := ParseChangelog([]byte(in)); !errors.Is(err, ErrChangelog) {
			t.Errorf("%s: err = %v, want ErrChangelog", name, err)
		}
	}
}
