// Command vulnindex turns a folder of OSV entries, as the
// golang.org/x/vulndb module carries them under data/osv, into the
// database layout govulncheck reads from a file:// URL, so that CI can
// check the build against the vulnerability database with no network
// beyond the Go module proxy.
//
// The layout (version 1 of the Go vulnerability database):
//
//	OUT/index/db.json       {"modified": newest entry's time}
//	OUT/index/modules.json  every affected module and the IDs naming it
//	OUT/ID/GO-YYYY-NNNN.json the entries, as they are
//
// The modules index leaves out each vulnerability's "fixed" version, a
// hint that lets a client skip entries it would rule out itself: without
// it govulncheck reads every entry that names a module of the build and
// judges the affected ranges itself, which is slower and never misses
// one. Entries are parsed strictly enough to index them; anything
// malformed stops the run, since a silently smaller database passes
// every check.
//
// Usage: vulnindex -vulns DIR -out DIR
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// entry is the part of an OSV entry the index needs.
type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Affected []struct {
		Package struct {
			Name      string `json:"name"`
			Ecosystem string `json:"ecosystem"`
		} `json:"package"`
	} `json:"affected"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
}

type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

var validID = regexp.MustCompile(`^GO-[0-9]{4}-[0-9]{4,}$`)

// build reads every *.json entry in vulns and writes the database to out.
// It returns the number of entries.
func build(vulns, out string) (int, error) {
	names, err := filepath.Glob(filepath.Join(vulns, "*.json"))
	if err != nil {
		return 0, err
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("no OSV entries in %s", vulns)
	}
	if err := os.MkdirAll(filepath.Join(out, "index"), 0o755); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Join(out, "ID"), 0o755); err != nil {
		return 0, err
	}
	var newest time.Time
	modules := map[string]*moduleMeta{}
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			return 0, err
		}
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		if !validID.MatchString(e.ID) || e.ID+".json" != filepath.Base(name) {
			return 0, fmt.Errorf("%s: entry id %q does not match its file name", name, e.ID)
		}
		if len(e.Affected) == 0 {
			return 0, fmt.Errorf("%s: names no affected module", name)
		}
		if e.Modified.After(newest) {
			newest = e.Modified
		}
		seen := map[string]bool{}
		for _, a := range e.Affected {
			path := a.Package.Name
			if a.Package.Ecosystem != "Go" || path == "" {
				return 0, fmt.Errorf("%s: affected package %q of ecosystem %q", name, path, a.Package.Ecosystem)
			}
			if seen[path] {
				continue
			}
			seen[path] = true
			m := modules[path]
			if m == nil {
				m = &moduleMeta{Path: path}
				modules[path] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified})
		}
		if err := os.WriteFile(filepath.Join(out, "ID", e.ID+".json"), raw, 0o644); err != nil {
			return 0, err
		}
	}
	list := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		slices.SortFunc(m.Vulns, func(a, b moduleVuln) int { return strings.Compare(a.ID, b.ID) })
		list = append(list, m)
	}
	slices.SortFunc(list, func(a, b *moduleMeta) int { return strings.Compare(a.Path, b.Path) })
	if err := writeJSON(filepath.Join(out, "index", "modules.json"), list); err != nil {
		return 0, err
	}
	if err := writeJSON(filepath.Join(out, "index", "db.json"), map[string]time.Time{"modified": newest}); err != nil {
		return 0, err
	}
	return len(names), nil
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func main() {
	vulns := flag.String("vulns", "", "folder of OSV entries (GO-YYYY-NNNN.json)")
	out := flag.String("out", "", "folder to write the database to")
	flag.Parse()
	if *vulns == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: vulnindex -vulns DIR -out DIR")
		os.Exit(2)
	}
	n, err := build(*vulns, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulnindex:", err)
		os.Exit(1)
	}
	fmt.Printf("vulnindex: %d entries indexed into %s\n", n, *out)
}
