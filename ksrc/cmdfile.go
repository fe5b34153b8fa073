package ksrc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// maxCmdFileSize bounds a kbuild .cmd file: the command plus the list of
// every header the unit includes (tens of KB).
const maxCmdFileSize = 4 << 20

// recorded is what kbuild wrote into O/dir/.file.o.cmd about a unit.
type recorded struct {
	argv   []string // the compiler command, split into words
	after  string   // the shell text kbuild runs after it (objtool), verbatim
	source string   // the input file as the command names it
}

// parseCmdFile finds the command kbuild recorded for target (the object's
// path relative to the output folder, "fs/proc/cmdline.o") in a .cmd
// file: "cmd_<target> := ..." (savedcmd_ since Linux 6.3) and
// "source_<target> := ...".
func parseCmdFile(b []byte, target string) (recorded, error) {
	var r recorded
	var cmdline string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), maxCmdFileSize)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " := ")
		if !ok {
			continue
		}
		switch k {
		case "cmd_" + target, "savedcmd_" + target:
			cmdline = v
		case "source_" + target:
			r.source = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return r, err
	}
	if cmdline == "" || r.source == "" {
		return r, fmt.Errorf("no cmd_%s and source_%s lines", target, target)
	}
	// The file is a Makefile fragment: kbuild wrote "$" as "$$" and "#"
	// as "$(pound)".
	cmdline = strings.ReplaceAll(cmdline, "$(pound)", "#")
	if strings.Contains(strings.ReplaceAll(cmdline, "$$", ""), "$") {
		return r, fmt.Errorf("the command uses make variables: %q", clip(cmdline, 200))
	}
	cmdline = strings.ReplaceAll(cmdline, "$$", "$")
	argv, rest, err := shellSplit(cmdline)
	if err != nil {
		return r, fmt.Errorf("the recorded command: %w", err)
	}
	if len(argv) == 0 {
		return r, errors.New("the recorded command is empty")
	}
	r.argv, r.after = argv, rest
	return r, nil
}

// shellSplit splits the first simple command of a POSIX shell line into
// words, handling quotes and backslashes, and returns the text after the
// first unquoted ";", "&" or "|" (the commands kbuild chains after the
// compiler). Expansions, redirections and globs in the first command are
// errors: a command that needs a shell to mean what it says cannot be
// rerun word by word.
func shellSplit(s string) (words []string, rest string, err error) {
	var cur strings.Builder
	inWord := false
	end := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			end()
		case c == '\n' || c == ';' || c == '&' || c == '|':
			end()
			return words, strings.TrimSpace(s[i:]), nil
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, "", errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == '"':
			inWord = true
			for i++; ; i++ {
				if i >= len(s) {
					return nil, "", errors.New("unterminated double quote")
				}
				d := s[i]
				if d == '"' {
					break
				}
				if d == '$' || d == '`' {
					return nil, "", fmt.Errorf("expansion %q inside double quotes", s[i:min(i+20, len(s))])
				}
				if d == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					i++
					d = s[i]
				}
				cur.WriteByte(d)
			}
		case c == '\\':
			if i+1 >= len(s) {
				return nil, "", errors.New("trailing backslash")
			}
			i++
			if s[i] != '\n' {
				cur.WriteByte(s[i])
				inWord = true
			}
		case strings.IndexByte("$`<>()*?[]{}", c) >= 0 || (c == '#' || c == '~') && !inWord:
			// "#" and "~" mean something to the shell only at a word's start.
			return nil, "", fmt.Errorf("shell syntax %q is not supported in the compiler command", s[i:min(i+20, len(s))])
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	end()
	return words, "", nil
}

// unitCommand turns the recorded compiler command into one that compiles
// src into obj: the input and output swapped, the dependency file dropped
// (it would land in the shared output folder), the original folder added
// to the quote include path so #include "local.h" still resolves, and
// __FILE__ and debug info mapped back to the original path so that the
// copy's location leaves no trace in the object. With overlay, srcRoot
// also holds changed headers at their paths in the tree: every -I folder
// of the tree is preceded by its counterpart under srcRoot, where there
// is one, and a header forced in with -include is taken from srcRoot
// when it is there. headers (tree paths) are the changed headers the
// overlay holds: the folder of each one's patched copy, then its
// original folder, are on the quote include path too, after the unit's
// own, so that a quote include of the header from another folder finds
// the patched copy, and #include "sibling.h" in a patched header finds
// its unchanged siblings (fs/nfs/internal.h, read by
// fs/nfs/blocklayout/blocklayout.c as "../internal.h", includes
// "nfs4_fs.h").
func unitCommand(r recorded, src, obj, srcRoot, origDir, origRoot string, overlay bool, headers ...string) ([]string, error) {
	var argv []string
	inputs, outputs := 0, 0
	// counterpart returns the folder or file under srcRoot that stands
	// for p of the tree, if it exists.
	counterpart := func(p string, dir bool) (string, bool) {
		rel, ok := strings.CutPrefix(filepath.Clean(p), origRoot+"/")
		if !overlay || !ok {
			return "", false
		}
		fi, err := os.Stat(filepath.Join(srcRoot, rel))
		if err != nil || fi.IsDir() != dir {
			return "", false
		}
		return filepath.Join(srcRoot, rel), true
	}
	for i := 0; i < len(r.argv); i++ {
		a := r.argv[i]
		switch {
		case a == "-I" && i+1 < len(r.argv):
			if c, ok := counterpart(r.argv[i+1], true); ok {
				argv = append(argv, "-I", c)
			}
			argv = append(argv, a, r.argv[i+1])
			i++
			continue
		case strings.HasPrefix(a, "-I") && len(a) > 2:
			if c, ok := counterpart(a[2:], true); ok {
				argv = append(argv, "-I"+c)
			}
		case a == "-include" && i+1 < len(r.argv):
			f := r.argv[i+1]
			if c, ok := counterpart(f, false); ok {
				f = c
			}
			argv = append(argv, a, f)
			i++
			continue
		case strings.HasPrefix(a, "-Wp,-MMD,") || strings.HasPrefix(a, "-Wp,-MD,"):
			continue
		case a == "-o" && i+1 < len(r.argv):
			argv = append(argv, "-o", obj)
			i++
			outputs++
			continue
		case a == r.source:
			argv = append(argv, src)
			inputs++
			continue
		}
		argv = append(argv, a)
	}
	if inputs != 1 || outputs != 1 {
		return nil, fmt.Errorf("the recorded command names the source %s %d times and -o %d times, want once each", r.source, inputs, outputs)
	}
	hasC := false
	for _, a := range argv {
		hasC = hasC || a == "-c"
	}
	if !hasC {
		return nil, errors.New("the recorded command does not compile with -c")
	}
	extra := []string{"-iquote", origDir}
	seen := map[string]bool{filepath.Clean(origDir): true}
	if overlay {
		// A patched header's copy before its original folder: gcc
		// searches the quote path before the -I folders, so the
		// original folder alone would hand #include "security.h" of
		// security/selinux/ss/services.c the unpatched header of
		// security/selinux/include.
		for _, h := range headers {
			if c, ok := counterpart(filepath.Join(origRoot, filepath.FromSlash(h)), false); ok && !seen[filepath.Dir(c)] {
				seen[filepath.Dir(c)] = true
				extra = append(extra, "-iquote", filepath.Dir(c))
			}
		}
	}
	for _, h := range headers {
		if d := filepath.Join(origRoot, filepath.Dir(filepath.FromSlash(h))); overlay && !seen[d] {
			seen[d] = true
			extra = append(extra, "-iquote", d)
		}
	}
	extra = append(extra,
		"-fmacro-prefix-map="+srcRoot+"/=",
		"-fdebug-prefix-map="+srcRoot+"/="+origRoot+"/",
	)
	out := append([]string{argv[0]}, extra...)
	return append(out, argv[1:]...), nil
}
