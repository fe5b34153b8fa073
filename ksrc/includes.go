package ksrc

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Finding the units a header reaches, step one: the text. The tree's .c
// and .h files are read for their #include lines, and the includes are
// resolved the way kbuild's include path resolves them, erring on the
// side of too many: "x.h" is the file beside the includer when there is
// one, else any header whose path ends in /x.h (a folder's -I flags are
// in its Makefile); <x.h> is include/x.h, the architecture's, the uapi
// ones, asm-generic's for a generated <asm/x.h> wrapper, or any header
// ending in /x.h. The closure from the changed header over these edges
// names every file that may read it; kbuild's dependency records (the
// deps_ lines of .file.o.cmd) then say exactly which units did.

// maxIncludeScan bounds the bytes read from one file for its includes:
// #include lines come early, and generated register headers are huge.
const maxIncludeScan = 1 << 20

// skippedTops are top-level folders whose files are never kernel units
// of the target.
var skippedTops = map[string]bool{
	".git": true, "Documentation": true, "tools": true, "scripts": true,
	"samples": true, "usr": true, "LICENSES": true, "debian": true,
}

// include is one #include line.
type include struct {
	name  string
	quote bool // "name" rather than <name>
}

// includeGraph is every kernel file of the tree and what it includes.
type includeGraph struct {
	arch     string
	files    map[string][]include // tree-relative path -> its includes
	bySuffix map[string][]string  // base name -> headers with that name
	macroInc map[string]bool      // files with an #include of a macro
}

// scanIncludes reads the #include lines of every .c and .h file of the
// tree at root, leaving out other architectures than arch and folders
// that hold no kernel code.
func scanIncludes(root, arch string) (*includeGraph, error) {
	g := &includeGraph{arch: arch, files: map[string][]include{}, bySuffix: map[string][]string{}, macroInc: map[string]bool{}}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "." {
				return nil
			}
			top, rest, _ := strings.Cut(rel, "/")
			if skippedTops[top] || (top == "arch" && rest != "" && !strings.HasPrefix(rest+"/", arch+"/")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || (!strings.HasSuffix(rel, ".c") && !strings.HasSuffix(rel, ".h")) {
			return nil
		}
		incs, macro, err := readIncludes(p)
		if err != nil {
			return err
		}
		g.files[rel] = incs
		if macro {
			g.macroInc[rel] = true
		}
		if strings.HasSuffix(rel, ".h") {
			g.bySuffix[path.Base(rel)] = append(g.bySuffix[path.Base(rel)], rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the includes of %s: %w", root, err)
	}
	return g, nil
}

// readIncludes returns the #include lines of a file, and whether one
// includes a macro (#include TRACE_INCLUDE(...)), which names no file.
func readIncludes(name string) (_ []include, macro bool, _ error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	incs, macro := scanIncludeLines(f)
	return incs, macro, nil
}

// scanIncludeLines reads the #include lines of a text (see
// readIncludes).
func scanIncludeLines(r io.Reader) (_ []include, macro bool) {
	var out []include
	sc := bufio.NewScanner(io.LimitReader(r, maxIncludeScan))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimLeft(sc.Bytes(), " \t")
		if len(line) == 0 || line[0] != '#' {
			continue
		}
		line = bytes.TrimLeft(line[1:], " \t")
		rest, ok := bytes.CutPrefix(line, []byte("include"))
		if !ok {
			continue
		}
		rest = bytes.TrimLeft(rest, " \t")
		if len(rest) < 2 {
			continue
		}
		closer := byte('>')
		switch rest[0] {
		case '"':
			closer = '"'
		case '<':
		default:
			macro = true // define_trace.h and the like
			continue
		}
		end := bytes.IndexByte(rest[1:], closer)
		if end <= 0 {
			continue
		}
		out = append(out, include{name: path.Clean(string(rest[1 : 1+end])), quote: closer == '"'})
	}
	// A line longer than the buffer ends the scan: the includes before
	// it are kept.
	return out, macro
}

// resolve returns the headers an include of file may name.
func (g *includeGraph) resolve(file string, inc include) []string {
	if inc.quote {
		beside := path.Join(path.Dir(file), inc.name)
		if _, ok := g.files[beside]; ok {
			return []string{beside}
		}
	}
	var out []string
	if !inc.quote {
		for _, dir := range []string{"include", "arch/" + g.arch + "/include", "include/uapi", "arch/" + g.arch + "/include/uapi"} {
			if _, ok := g.files[dir+"/"+inc.name]; ok {
				out = append(out, dir+"/"+inc.name)
			}
		}
		// kbuild generates arch/ARCH/include/generated/asm/x.h wrappers
		// that include <asm-generic/x.h>.
		if rest, ok := strings.CutPrefix(inc.name, "asm/"); ok {
			if _, ok := g.files["include/asm-generic/"+rest]; ok {
				out = append(out, "include/asm-generic/"+rest)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	if strings.HasPrefix(inc.name, "../") || strings.HasPrefix(inc.name, "/") {
		return nil
	}
	for _, h := range g.bySuffix[path.Base(inc.name)] {
		if h == inc.name || strings.HasSuffix(h, "/"+inc.name) {
			out = append(out, h)
		}
	}
	return out
}

// includers returns the .c files whose include closure may reach one of
// headers, and the headers of that closure that reach them through a
// quote include beside themselves ("x.h" naming a header of the same
// folder, or "../x.h"), which a build with changed headers must copy
// beside the changed ones. It stops with an error when more than
// maxFiles files are in the closure.
func (g *includeGraph) includers(headers []string, maxFiles int) (units, beside []string, err error) {
	// Reverse edges, computed once.
	rev := map[string][]string{}
	quoted := map[[2]string]bool{} // {includer, header}: beside it
	for f, incs := range g.files {
		for _, inc := range incs {
			for _, h := range g.resolve(f, inc) {
				rev[h] = append(rev[h], f)
				if inc.quote && h == path.Join(path.Dir(f), inc.name) {
					quoted[[2]string{f, h}] = true
				}
			}
		}
	}
	seen := map[string]bool{}
	queue := slices.Clone(headers)
	for _, h := range headers {
		seen[h] = true
	}
	copied := map[string]bool{}
	for _, h := range headers {
		copied[h] = true
	}
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		for _, f := range rev[h] {
			if strings.HasSuffix(f, ".h") && quoted[[2]string{f, h}] && copied[h] && !copied[f] {
				copied[f] = true
				beside = append(beside, f)
				if seen[f] {
					queue = append(queue, f) // its own includers may need copies now
				}
			}
			if seen[f] {
				continue
			}
			seen[f] = true
			if len(seen) > maxFiles {
				return nil, nil, fmt.Errorf("more than %d files include it, directly or through other headers", maxFiles)
			}
			if strings.HasSuffix(f, ".c") {
				units = append(units, f)
			}
			// A .c file #included by another passes the header on too.
			queue = append(queue, f)
		}
	}
	slices.Sort(units)
	slices.Sort(beside)
	return units, beside, nil
}
