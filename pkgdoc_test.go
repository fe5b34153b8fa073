// Package splicefleet_test holds repository-wide checks.
package splicefleet_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryPackageExplainsItsDesign requires one package doc comment per
// package, in exactly one file, of at least three lines: a reader opening
// any folder learns what it is for and how it is built.
func TestEveryPackageExplainsItsDesign(t *testing.T) {
	dirs := map[string][]string{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = append(dirs[filepath.Dir(path)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 4 {
		t.Fatalf("found only %d packages; is the walk broken?", len(dirs))
	}
	for dir, files := range dirs {
		var docs []string
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil {
				docs = append(docs, f)
				if n := strings.Count(strings.TrimSpace(af.Doc.Text()), "\n") + 1; n < 3 {
					t.Errorf("%s: package doc is %d line(s); explain the design", f, n)
				}
			}
		}
		if len(docs) != 1 {
			t.Errorf("package %s has %d package doc comments (%v), want exactly one", dir, len(docs), docs)
		}
	}
}
