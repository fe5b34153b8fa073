package main

import (
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

const (
	mitText = `MIT License

Copyright (c) 2017 Some One
Copyright (c) 2016 Other Person

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction.
`
	bsdText = "Copyright 2009 The Go Authors. All rights reserved.\n\n" +
		"Redistribution and use in source and binary forms, with or without\nmodification, are permitted provided that:\n\n" +
		"\t* Neither the name of Google LLC nor the names of its\ncontributors may be used to endorse or promote products.\n"
	apacheText = `
                                 Apache License
                           Version 2.0, January 2004

   TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION

   Copyright [yyyy] [name of copyright owner]
`
	mplText = "Copyright IBM Corp. 2013, 2026\n\nMozilla Public License, version 2.0\n\n1. Definitions\n"
)

// fixture lays out a module cache and a Go distribution.
func fixture(t *testing.T, files map[string]string) (modcache, goroot string) {
	t.Helper()
	root := t.TempDir()
	modcache, goroot = filepath.Join(root, "mod"), filepath.Join(root, "go")
	files["go/VERSION"] = "go1.99.1\ntime 2026-01-01T00:00:00Z\n"
	files["go/LICENSE"] = bsdText
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return modcache, goroot
}

func render(t *testing.T, info *debug.BuildInfo, modcache, goroot string) (string, error) {
	t.Helper()
	var b strings.Builder
	err := write(&b, info, options{modcache: modcache, goroot: goroot, holder: "2026 splicefleet developers", source: "https://example.org/splicefleet"})
	return b.String(), err
}

// TestCopyrightOfLinkedModules: every module of the build information
// gets a paragraph with the holders and the licence its licence file
// states, read from the module cache (upper case escaped as it spells
// it); Apache and MPL refer to common-licenses, others carry their text.
func TestCopyrightOfLinkedModules(t *testing.T) {
	modcache, goroot := fixture(t, map[string]string{
		"mod/github.com/!some!one/mit@v1.0.0/LICENSE.txt": mitText,
		"mod/example.org/apache@v0.3.0/LICENSE":           apacheText,
		"mod/example.org/apache@v0.3.0/NOTICE":            "Apache module\nCopyright 2015 The Apache Module Authors\n",
		"mod/example.org/mpl@v0.1.0/LICENSE":              mplText,
		"mod/example.org/both@v1.1.0/LICENSE":             mitText + "\nAnd the rest: licensed under the Apache License, Version 2.0.\n",
		"mod/example.org/new@v2.0.0/LICENSE":              bsdText,
	})
	info := &debug.BuildInfo{GoVersion: "go1.99.1", Deps: []*debug.Module{
		{Path: "github.com/SomeOne/mit", Version: "v1.0.0"},
		{Path: "example.org/apache", Version: "v0.3.0"},
		{Path: "example.org/mpl", Version: "v0.1.0"},
		{Path: "example.org/both", Version: "v1.1.0"},
		{Path: "example.org/old", Version: "v1.0.0", Replace: &debug.Module{Path: "example.org/new", Version: "v2.0.0"}},
	}}
	got, err := render(t, info, modcache, goroot)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n",
		"\n\nFiles: *\nCopyright: 2026 splicefleet developers\nLicense: no-licence-granted\n The splicefleet developers have not yet chosen a licence",
		"\nFiles: go1.99.1/*\nCopyright: 2009 The Go Authors\nLicense: BSD-3-Clause\n Copyright 2009",
		"\nFiles: github.com/SomeOne/mit@v1.0.0/*\nCopyright: 2017 Some One\n 2016 Other Person\nLicense: MIT\n MIT License\n .\n",
		"\nFiles: example.org/apache@v0.3.0/*\nCopyright: 2015 The Apache Module Authors\nLicense: Apache-2.0\nComment: The module's NOTICE file:\n .\n Apache module\n",
		"\nFiles: example.org/mpl@v0.1.0/*\nCopyright: IBM Corp. 2013, 2026\nLicense: MPL-2.0\n\n",
		"\nLicense: Apache-2.0 and MIT\n MIT License\n",
		"On Debian systems, the full text of the Apache-2.0 licence is in /usr/share/common-licenses/Apache-2.0.",
		"\nFiles: example.org/new@v2.0.0/*\n",
		"\nLicense: Apache-2.0\n On Debian systems, the full text of this licence is in\n /usr/share/common-licenses/Apache-2.0.\n",
		"\nLicense: MPL-2.0\n On Debian systems, the full text of this licence is in\n /usr/share/common-licenses/MPL-2.0.\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the copyright file lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "\t") || strings.Contains(got, "TERMS AND CONDITIONS") || strings.Contains(got, "example.org/old") {
		t.Errorf("tabs, the copied Apache text or the replaced module in the copyright file:\n%s", got)
	}
	if strings.Contains(got, "[yyyy]") {
		t.Errorf("a licence's template line taken for a holder:\n%s", got)
	}
}

// TestCopyrightRefusesWhatItCannotRead: a module missing from the cache,
// without a licence file, or with a licence not recognised stops the run,
// naming the module; so does a Go distribution other than the build's.
func TestCopyrightRefusesWhatItCannotRead(t *testing.T) {
	modcache, goroot := fixture(t, map[string]string{
		"mod/example.org/nolicence@v1.0.0/README.md": "hello\n",
		"mod/example.org/odd@v1.0.0/LICENSE":         "Do what you like, but be nice.\n",
	})
	for _, c := range []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"absent", &debug.BuildInfo{GoVersion: "go1.99.1", Deps: []*debug.Module{{Path: "example.org/absent", Version: "v1.0.0"}}},
			"example.org/absent@v1.0.0: " + filepath.Join(modcache, "example.org/absent@v1.0.0") + ": not in the module cache"},
		{"no licence", &debug.BuildInfo{GoVersion: "go1.99.1", Deps: []*debug.Module{{Path: "example.org/nolicence", Version: "v1.0.0"}}},
			"example.org/nolicence@v1.0.0: " + filepath.Join(modcache, "example.org/nolicence@v1.0.0") + ": no licence file"},
		{"unknown licence", &debug.BuildInfo{GoVersion: "go1.99.1", Deps: []*debug.Module{{Path: "example.org/odd", Version: "v1.0.0"}}},
			"example.org/odd@v1.0.0: " + filepath.Join(modcache, "example.org/odd@v1.0.0/LICENSE") + ": no licence recognised"},
		{"local replacement", &debug.BuildInfo{GoVersion: "go1.99.1", Deps: []*debug.Module{{Path: "example.org/x", Version: "v1.0.0", Replace: &debug.Module{Path: "../x"}}}},
			"../x: no version in the build information"},
		{"other Go", &debug.BuildInfo{GoVersion: "go1.98.0"},
			"this Go distribution is go1.99.1, but the binary was built with go1.98.0"},
	} {
		_, err := render(t, c.info, modcache, goroot)
		var le *licenceError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want a licence error containing %q", c.name, err, c.want)
		}
	}
}

func TestClassify(t *testing.T) {
	for text, want := range map[string]string{
		mitText:    "MIT",
		bsdText:    "BSD-3-Clause",
		apacheText: "Apache-2.0",
		mplText:    "MPL-2.0",
		"> Redistribution and use in source and binary forms, with or without\n> modification, are permitted provided that": "BSD-2-Clause",
		"Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee":              "ISC",
		"All rights reserved.": "",
	} {
		if got := strings.Join(classify(text), " and "); got != want {
			t.Errorf("classify(%.40q) = %q, want %q", text, got, want)
		}
	}
}
