// Command debcopyright writes the Debian package's copyright file
// (/usr/share/doc/splicefleet/copyright) in the machine-readable format
// (DEP-5, copyright-format 1.0) for a built binary.
//
// /usr/bin/splicefleet is one statically linked Go program: besides
// splicefleet's own code it carries every Go module it was built with and
// the Go standard library. The build information the go command embeds in
// the binary (what `go version -m` prints) names those modules; each one's
// licence is read from its licence file in the module cache, and the
// standard library's from the Go distribution (GOROOT) that built it. So
// the file is generated at build time from what was linked, never kept by
// hand, and it cannot forget a module or keep one that is gone.
//
// The licence of a file is recognised by the wording that defines it
// (Apache 2.0, MPL 2.0, MIT, ISC, BSD 2- and 3-clause); a licence file
// with none of them stops the run, naming the module and the file, since
// a copyright file that guesses is worse than none. Apache 2.0 and MPL 2.0
// refer to /usr/share/common-licenses, as Debian policy asks; the other
// licences carry the module's own licence text, which names its holders.
// A module's NOTICE file, which the Apache licence asks redistributors to
// pass on, is copied into the module's Comment field.
//
// Usage: debcopyright -binary FILE -modcache DIR -goroot DIR [-copyright TEXT] [-source URL]
package main

import (
	"bufio"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"unicode"
)

func main() {
	binary := flag.String("binary", "", "the Go program the package ships")
	modcache := flag.String("modcache", "", "the module cache it was built from (go env GOMODCACHE)")
	goroot := flag.String("goroot", "", "the Go distribution that built it (go env GOROOT)")
	holder := flag.String("copyright", "splicefleet developers", "copyright statement of the program's own code")
	source := flag.String("source", "https://github.com/splicefleet/splicefleet", "where the source is published")
	flag.Parse()
	if *binary == "" || *modcache == "" || *goroot == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: debcopyright -binary FILE -modcache DIR -goroot DIR [-copyright TEXT] [-source URL]")
		os.Exit(2)
	}
	info, err := buildinfo.ReadFile(*binary)
	if err != nil {
		fmt.Fprintf(os.Stderr, "debcopyright: %s: no Go build information: %v\n", *binary, err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	if err := write(w, info, options{modcache: *modcache, goroot: *goroot, holder: *holder, source: *source}); err != nil {
		fmt.Fprintln(os.Stderr, "debcopyright:", err)
		os.Exit(1)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "debcopyright:", err)
		os.Exit(1)
	}
}

type options struct {
	modcache, goroot string
	holder, source   string
}

// commonLicenses are the licences Debian ships in /usr/share/common-licenses
// that a copyright file refers to instead of copying them.
var commonLicenses = []string{"Apache-2.0", "MPL-2.0"}

// licenceError is a module whose licence could not be established.
type licenceError struct {
	Module, File, Reason string
}

func (e *licenceError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("%s: %s", e.Module, e.Reason)
	}
	return fmt.Sprintf("%s: %s: %s", e.Module, e.File, e.Reason)
}

// paragraph is one Files paragraph.
type paragraph struct {
	files     string
	copyright []string
	license   string   // the short name or expression
	text      []string // the licence text, when the paragraph carries it
	comment   []string
}

// write renders the copyright file for a binary's build information.
func write(w io.Writer, info *debug.BuildInfo, o options) error {
	own := paragraph{
		files:     "*",
		copyright: []string{o.holder},
		license:   "no-licence-granted",
		text: strings.Split(`The splicefleet developers have not yet chosen a licence for splicefleet,
and none is granted: until one is published with the source at
`+o.source+`, copying, modifying and redistributing
splicefleet's own code is not permitted beyond what the law allows without
a licence.

The Go modules and the Go standard library linked into
/usr/bin/splicefleet are under their own licences, listed below.`, "\n"),
	}
	paras := []paragraph{own}

	std, err := stdParagraph(info.GoVersion, o.goroot)
	if err != nil {
		return err
	}
	paras = append(paras, std)

	deps := slices.Clone(info.Deps)
	slices.SortFunc(deps, func(a, b *debug.Module) int { return strings.Compare(a.Path, b.Path) })
	for _, m := range deps {
		if m.Replace != nil {
			m = m.Replace
		}
		if m.Version == "" {
			return &licenceError{Module: m.Path, Reason: "no version in the build information (a replacement by a local directory?)"}
		}
		p, err := moduleParagraph(m.Path, m.Version, filepath.Join(o.modcache, escape(m.Path)+"@"+escape(m.Version)))
		if err != nil {
			return err
		}
		paras = append(paras, p)
	}

	fmt.Fprintf(w, "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")
	fmt.Fprintf(w, "Upstream-Name: splicefleet\n")
	fmt.Fprintf(w, "Source: %s\n", o.source)
	writeField(w, "Comment", strings.Split(`/usr/bin/splicefleet is one statically linked Go program. Besides
splicefleet's own code it contains the Go standard library and the Go
modules it was built with (`+"`go version -m /usr/bin/splicefleet`"+` lists
them). Each paragraph after the first names one of them as
MODULE@VERSION/*, the files `+"`go mod download MODULE@VERSION`"+` fetches, with
the copyright lines and the licence of its licence file.`, "\n"))

	standalone := map[string]bool{}
	for _, p := range paras {
		fmt.Fprintf(w, "\nFiles: %s\n", p.files)
		writeField(w, "Copyright", p.copyright)
		writeField(w, "License", append([]string{p.license}, p.text...))
		if len(p.comment) > 0 {
			writeField(w, "Comment", p.comment)
		}
		if len(p.text) == 0 {
			standalone[p.license] = true
		}
	}
	for _, name := range commonLicenses {
		if standalone[name] {
			fmt.Fprintf(w, "\nLicense: %s\n On Debian systems, the full text of this licence is in\n /usr/share/common-licenses/%s.\n", name, name)
		}
	}
	return nil
}

// stdParagraph is the Go standard library's paragraph: the LICENSE of
// the Go distribution that built the binary.
func stdParagraph(goVersion, goroot string) (paragraph, error) {
	version, err := os.ReadFile(filepath.Join(goroot, "VERSION"))
	if err != nil {
		return paragraph{}, &licenceError{Module: "the Go standard library", Reason: err.Error()}
	}
	if have, _, _ := strings.Cut(string(version), "\n"); have != goVersion {
		return paragraph{}, &licenceError{Module: "the Go standard library", File: goroot,
			Reason: fmt.Sprintf("this Go distribution is %s, but the binary was built with %s", have, goVersion)}
	}
	p, err := licenceParagraph("the Go standard library "+goVersion, goroot, []string{"LICENSE"})
	if err != nil {
		return paragraph{}, err
	}
	p.files = goVersion + "/*"
	p.comment = append([]string{"The Go standard library and runtime of " + goVersion + "."}, p.comment...)
	return p, nil
}

var (
	licenceName = regexp.MustCompile(`(?i)^(licen[cs]e|copying)([-._].*)?$`)
	noticeName  = regexp.MustCompile(`(?i)^notice(\.(txt|md))?$`)
)

// moduleParagraph reads a module's licence files from its folder in the
// module cache.
func moduleParagraph(path, version, dir string) (paragraph, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return paragraph{}, &licenceError{Module: path + "@" + version, File: dir, Reason: "not in the module cache (go mod download fills it)"}
		}
		return paragraph{}, &licenceError{Module: path + "@" + version, Reason: err.Error()}
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && licenceName.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return paragraph{}, &licenceError{Module: path + "@" + version, File: dir, Reason: "no licence file (LICENSE, COPYING)"}
	}
	p, err := licenceParagraph(path+"@"+version, dir, names)
	if err != nil {
		return paragraph{}, err
	}
	p.files = path + "@" + version + "/*"
	return p, nil
}

// licenceParagraph builds a paragraph from licence files (and a NOTICE
// file beside them).
func licenceParagraph(module, dir string, names []string) (paragraph, error) {
	var p paragraph
	var licences []string
	var texts [][]string
	for _, name := range names {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return paragraph{}, &licenceError{Module: module, Reason: err.Error()}
		}
		found := classify(string(raw))
		if len(found) == 0 {
			return paragraph{}, &licenceError{Module: module, File: filepath.Join(dir, name),
				Reason: "no licence recognised (Apache-2.0, MPL-2.0, MIT, ISC, BSD-2-Clause, BSD-3-Clause); add its wording to scripts/debcopyright"}
		}
		for _, l := range found {
			if !slices.Contains(licences, l) {
				licences = append(licences, l)
			}
		}
		p.copyright = appendNew(p.copyright, holders(string(raw))...)
		texts = append(texts, lines(string(raw)))
	}
	slices.SortFunc(licences, func(a, b string) int { return slices.Index(order, a) - slices.Index(order, b) })
	p.license = strings.Join(licences, " and ")

	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Type().IsRegular() && noticeName.MatchString(e.Name()) {
			raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				return paragraph{}, &licenceError{Module: module, Reason: err.Error()}
			}
			p.copyright = appendNew(p.copyright, holders(string(raw))...)
			p.comment = append(p.comment, "The module's "+e.Name()+" file:", "")
			p.comment = append(p.comment, lines(string(raw))...)
		}
	}
	if len(p.copyright) == 0 {
		p.copyright = []string{"the authors of " + module + " (its licence file names no holder)"}
	}

	// One licence Debian ships: refer to it. Otherwise carry the
	// module's own text, which names its holders.
	if len(licences) == 1 && slices.Contains(commonLicenses, licences[0]) {
		return p, nil
	}
	for i, t := range texts {
		if i > 0 {
			p.text = append(p.text, "")
		}
		if fullApache.MatchString(strings.Join(t, " ")) {
			return paragraph{}, &licenceError{Module: module, File: filepath.Join(dir, names[i]),
				Reason: "holds the full Apache 2.0 text beside another licence; Debian wants it referred to, not copied"}
		}
		p.text = append(p.text, t...)
	}
	for _, l := range licences {
		if slices.Contains(commonLicenses, l) {
			p.text = append(p.text, "", "On Debian systems, the full text of the "+l+" licence is in /usr/share/common-licenses/"+l+".")
		}
	}
	return p, nil
}

// order is the order licences are named in a License expression.
var order = []string{"Apache-2.0", "MPL-2.0", "MIT", "ISC", "BSD-2-Clause", "BSD-3-Clause"}

var fullApache = regexp.MustCompile(`(?i)terms\s+and\s+conditions\s+for\s+use,\s+reproduction,\s+and\s+distribution`)

// classify names the licences whose defining wording a text contains.
func classify(text string) []string {
	t := normalise(text)
	var found []string
	if strings.Contains(t, "apache license") && strings.Contains(t, "version 2.0") {
		found = append(found, "Apache-2.0")
	}
	if strings.Contains(t, "mozilla public license") && (strings.Contains(t, "version 2.0") || strings.Contains(t, "v. 2.0")) {
		found = append(found, "MPL-2.0")
	}
	if strings.Contains(t, "permission is hereby granted, free of charge, to any person obtaining a copy") {
		found = append(found, "MIT")
	}
	if strings.Contains(t, "permission to use, copy, modify, and/or distribute this software for any purpose") ||
		strings.Contains(t, "permission to use, copy, modify, and distribute this software for any purpose") {
		found = append(found, "ISC")
	}
	if strings.Contains(t, "redistribution and use in source and binary forms, with or without modification, are permitted") {
		if strings.Contains(t, "neither the name") || strings.Contains(t, "may be used to endorse or promote products") {
			found = append(found, "BSD-3-Clause")
		} else {
			found = append(found, "BSD-2-Clause")
		}
	}
	return found
}

// normalise lowercases a text and reduces it to words separated by single
// spaces, dropping Markdown quoting and emphasis.
func normalise(text string) string {
	text = strings.Map(func(r rune) rune {
		switch r {
		case '>', '#', '*', '_', '`':
			return ' '
		}
		return unicode.ToLower(r)
	}, text)
	return strings.Join(strings.Fields(text), " ")
}

// copyrightLine is a copyright statement: a line that begins with the
// word (capitalised: in running licence text it is lower case) and names
// a year, before or after the holder ("Copyright (c) 2014 Brian Goff",
// "Copyright IBM Corp. 2013, 2026"); "Copyright [yyyy] [name of copyright
// owner]", a template, has no year.
var (
	copyrightLine     = regexp.MustCompile(`^[\s>#*]*(?:Copyright|COPYRIGHT)\s*(?:\([cC]\)\s*|©\s*)?(.*\d{4}.*)$`)
	allRightsReserved = regexp.MustCompile(`(?i)[\s.,]*all rights reserved\.?\s*$`)
)

// holders returns the copyright statements of a licence or NOTICE file,
// without the word Copyright and "All rights reserved".
func holders(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		m := copyrightLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		h := strings.TrimSpace(allRightsReserved.ReplaceAllString(m[1], ""))
		out = appendNew(out, h)
	}
	return out
}

func appendNew(list []string, items ...string) []string {
	for _, s := range items {
		if s != "" && !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	return list
}

// lines splits a text into lines for a field's continuation: tabs become
// spaces (the format has no tabs in licence text), trailing blanks and
// blank lines at either end go.
func lines(text string) []string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		out = append(out, strings.TrimRightFunc(strings.ReplaceAll(l, "\t", "    "), unicode.IsSpace))
	}
	for len(out) > 0 && out[0] == "" {
		out = out[1:]
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// writeField writes a field whose first line follows the name and whose
// others are continuation lines; an empty line is written as " .".
func writeField(w io.Writer, name string, value []string) {
	fmt.Fprintf(w, "%s: %s\n", name, value[0])
	for _, l := range value[1:] {
		if l == "" {
			l = "."
		}
		fmt.Fprintf(w, " %s\n", l)
	}
}

// escape is the module cache's spelling of a module path or version: an
// upper-case letter becomes '!' and the letter in lower case, so that
// paths differing only in case stay apart on case-insensitive file
// systems.
func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
