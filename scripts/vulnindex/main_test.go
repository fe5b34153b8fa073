package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeEntries(t *testing.T, entries map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range entries {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const (
	stdlibEntry = `{"id":"GO-2026-0001","modified":"2026-01-02T00:00:00Z","affected":[
		{"package":{"name":"stdlib","ecosystem":"Go"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.26.9"}]}]},
		{"package":{"name":"stdlib","ecosystem":"Go"},"ranges":[{"type":"SEMVER","events":[{"introduced":"1.27.0-0"},{"fixed":"1.27.2"}]}]},
		{"package":{"name":"toolchain","ecosystem":"Go"}}]}`
	moduleEntry = `{"id":"GO-2026-0002","modified":"2026-03-04T00:00:00Z","affected":[
		{"package":{"name":"example.com/m","ecosystem":"Go"}}]}`
)

// TestBuildIndexesEveryModule: every affected module lists every entry
// naming it once, the entries are copied as they are, and the database
// is as new as its newest entry.
func TestBuildIndexesEveryModule(t *testing.T) {
	in := writeEntries(t, map[string]string{"GO-2026-0001.json": stdlibEntry, "GO-2026-0002.json": moduleEntry})
	out := t.TempDir()
	n, err := build(in, out)
	if err != nil || n != 2 {
		t.Fatalf("build: %d, %v", n, err)
	}
	raw, err := os.ReadFile(filepath.Join(out, "index", "modules.json"))
	if err != nil {
		t.Fatal(err)
	}
	var mods []moduleMeta
	if err := json.Unmarshal(raw, &mods); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, m := range mods {
		for _, v := range m.Vulns {
			got[m.Path] = append(got[m.Path], v.ID)
		}
	}
	want := map[string][]string{"example.com/m": {"GO-2026-0002"}, "stdlib": {"GO-2026-0001"}, "toolchain": {"GO-2026-0001"}}
	if len(got) != len(want) {
		t.Fatalf("modules %v, want %v", got, want)
	}
	for path, ids := range want {
		if strings.Join(got[path], ",") != strings.Join(ids, ",") {
			t.Errorf("%s: %v, want %v", path, got[path], ids)
		}
	}
	if strings.Contains(string(raw), "fixed") {
		t.Errorf("the index names fixed versions: %s", raw)
	}
	copied, err := os.ReadFile(filepath.Join(out, "ID", "GO-2026-0001.json"))
	if err != nil || string(copied) != stdlibEntry {
		t.Errorf("entry copied as %q, %v", copied, err)
	}
	db, err := os.ReadFile(filepath.Join(out, "index", "db.json"))
	if err != nil || string(db) != `{"modified":"2026-03-04T00:00:00Z"}` {
		t.Errorf("db.json %s, %v", db, err)
	}
}

// TestBuildRefusesWhatWouldShrinkTheDatabase: an unreadable entry, one
// filed under another name, one of another ecosystem or an empty folder
// stop the run instead of leaving entries out.
func TestBuildRefusesWhatWouldShrinkTheDatabase(t *testing.T) {
	for name, tc := range map[string]struct {
		entries map[string]string
		want    string
	}{
		"truncated":       {map[string]string{"GO-2026-0001.json": stdlibEntry[:40]}, "unexpected end"},
		"misfiled":        {map[string]string{"GO-2026-0003.json": stdlibEntry}, "does not match its file name"},
		"other ecosystem": {map[string]string{"GO-2026-0002.json": strings.Replace(moduleEntry, `"Go"`, `"npm"`, 1)}, `ecosystem "npm"`},
		"no module":       {map[string]string{"GO-2026-0002.json": `{"id":"GO-2026-0002","affected":[]}`}, "names no affected module"},
		"empty":           {map[string]string{}, "no OSV entries"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := build(writeEntries(t, tc.entries), t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("build: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
