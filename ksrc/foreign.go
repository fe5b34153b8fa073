package ksrc

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// A few kernel objects are compiled from a file outside the kernel's
// own folders, by a rule of their folder's Makefile rather than by
// obj-y's implicit one: kernel/bpf/Makefile builds relo_core.o from
// tools/lib/bpf/relo_core.c, which libbpf shares with the kernel
// ($(obj)/relo_core.o: $(srctree)/tools/lib/bpf/relo_core.c). A patch to
// such a file is compiled as that object: kbuild's record of the
// object's command names the file as its source, and the quote include
// path starts at the file's own folder, as it does for kbuild.

// foreignRule matches such a rule: the object, then the source.
var foreignRule = regexp.MustCompile(`^\$\(obj\)/([A-Za-z0-9_.-]+\.o)\s*:\s*\$\(srctree\)/(\S+\.c)\b`)

// foreignObjects returns, for each .c file of srcs outside the kernel's
// folders, the object a kernel Makefile builds from it; a file no
// Makefile builds is left out.
func (t *Tree) foreignObjects(srcs []string) (map[string]string, error) {
	want := map[string]bool{}
	for _, s := range srcs {
		if top, _, _ := strings.Cut(s, "/"); strings.HasSuffix(s, ".c") && skippedTops[top] {
			want[s] = true
		}
	}
	out := map[string]string{}
	if len(want) == 0 {
		return out, nil
	}
	err := filepath.WalkDir(t.Source, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(t.Source, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			top, rest, _ := strings.Cut(rel, "/")
			if rel != "." && (skippedTops[top] || top == "arch" && rest != "" && !strings.HasPrefix(rest+"/", srcArch()+"/")) {
				return filepath.SkipDir
			}
			return nil
		}
		if base := d.Name(); base != "Makefile" && base != "Kbuild" {
			return nil
		}
		text, err := readBounded(p, maxMakefileSize)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(text))
		sc.Buffer(make([]byte, 64<<10), maxMakefileSize)
		for sc.Scan() {
			m := foreignRule.FindStringSubmatch(strings.TrimSpace(sc.Text()))
			if m == nil || !want[m[2]] {
				continue
			}
			obj := path.Join(path.Dir(rel), m[1])
			if prev, ok := out[m[2]]; ok && prev != obj {
				return fmt.Errorf("%s is built into both %s and %s", m[2], prev, obj)
			}
			out[m[2]] = obj
		}
		return sc.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("compile: reading the Makefiles for the objects of %d files outside the kernel's folders: %w", len(want), err)
	}
	return out, nil
}

// objectOf returns the object kbuild makes from a .c file of the tree:
// FILE.o beside it, or the object a Makefile's own rule makes from a
// file outside the kernel's folders (foreignObjects).
func (t *Tree) objectOf(src string) string {
	if o, ok := t.foreign[src]; ok {
		return o
	}
	return objectOf(src)
}
