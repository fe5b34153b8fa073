package ksrc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// A Kconfig file says how kernels can be configured: a change to it
// changes what a later build may choose, never the code of a kernel that
// runs. A fix restricts an option (HVC_DCC to the ARM cores that have
// the instruction), or turns one on by default. For this kernel, its
// configuration (.config) is what counts:
//   - a change inside the entries of options this kernel leaves unset,
//     that gives none of them a default, concerns other kernels: the
//     bundle leaves it out, and create says so;
//   - a change to an option this kernel sets, a new default, or a line
//     outside any option's entry (menu, if, source) is refused: a
//     livepatch cannot change how the running kernel was configured.

// kconfigEntryRe starts an option's entry.
var kconfigEntryRe = regexp.MustCompile(`^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$`)

// kconfigBlockRe starts anything else at the top level of a Kconfig
// file, which ends the entry before it.
var kconfigBlockRe = regexp.MustCompile(`^\s*(?:choice|endchoice|menu|endmenu|if|endif|source|rsource|osource|orsource|comment|mainmenu)\b`)

// kconfigDefaultRe is a line that gives an option a value by default.
var kconfigDefaultRe = regexp.MustCompile(`^\s*(?:default|def_bool|def_tristate)\b`)

// isKconfig reports whether a patched file is a Kconfig file.
func isKconfig(p string) bool {
	return strings.HasPrefix(path.Base(p), "Kconfig")
}

// kconfigOptions reads the options a configuration sets (=y, =m, or a
// value); "# CONFIG_X is not set" and absent options are unset.
func kconfigOptions(config []byte) map[string]bool {
	set := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(config))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, _, ok := strings.Cut(sc.Text(), "=")
		if ok && strings.HasPrefix(name, "CONFIG_") {
			set[strings.TrimPrefix(name, "CONFIG_")] = true
		}
	}
	return set
}

// kconfigChange judges a patch's change to a Kconfig file against the
// configuration's set options. It returns the unset options whose
// entries the change touches, or an error saying why the change concerns
// this kernel.
func kconfigChange(fp *FilePatch, old []byte, set map[string]bool) ([]string, error) {
	at, err := hunkPositions(old, fp)
	if err != nil {
		return nil, err
	}
	lines := splitLines(old)
	var options []string
	for hi, h := range fp.Hunks {
		// The entry the hunk starts in, from the old text before where
		// it applies.
		entry := ""
		for _, l := range lines[:at[hi]] {
			entry = kconfigEntry(entry, strings.TrimRight(l, "\n"))
		}
		for _, l := range h.Lines {
			text := strings.TrimRight(l.Text, "\n")
			entry = kconfigEntry(entry, text)
			t := strings.TrimSpace(text)
			if l.Op == ' ' || t == "" || strings.HasPrefix(t, "#") {
				continue
			}
			switch {
			case entry == "":
				return nil, fmt.Errorf("%s: line %q is outside any option's entry: it may change options this kernel sets", fp.Path, t)
			case set[entry]:
				return nil, fmt.Errorf("%s: the change is to option CONFIG_%s, which this kernel's configuration sets: a livepatch cannot change how the running kernel was configured", fp.Path, entry)
			case l.Op == '+' && kconfigDefaultRe.MatchString(text):
				return nil, fmt.Errorf("%s: the change gives CONFIG_%s, which this kernel leaves unset, a default (%q): the fix turns it on in a new build, which a livepatch cannot do", fp.Path, entry, t)
			}
			if !slices.Contains(options, entry) {
				options = append(options, entry)
			}
		}
	}
	return options, nil
}

// kconfigEntry is the option whose entry a line is in, given the one of
// the line before.
func kconfigEntry(entry, line string) string {
	if m := kconfigEntryRe.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	if kconfigBlockRe.MatchString(line) {
		return ""
	}
	return entry
}

// kconfigNotes judges the patch's Kconfig files against the prepared
// tree's configuration: one note per file whose change concerns only
// options this kernel leaves unset, or the error of the first that
// concerns this kernel.
func (t *Tree) kconfigNotes(patch *Patch) ([]string, error) {
	var set map[string]bool
	var notes []string
	for _, fp := range patch.files {
		if !isKconfig(fp.Path) {
			continue
		}
		if set == nil {
			config, err := readBounded(filepath.Join(t.ObjDir, ".config"), maxConfigSize)
			if err != nil {
				return nil, fmt.Errorf("compile: the configuration: %w", err)
			}
			set = kconfigOptions(config)
		}
		old, err := readBounded(filepath.Join(t.Source, filepath.FromSlash(fp.Path)), MaxSourceSize)
		if err != nil {
			return nil, fmt.Errorf("compile: %s: %w", fp.Path, err)
		}
		options, err := kconfigChange(fp, old, set)
		var ae *ApplyError
		switch {
		case errors.As(err, &ae):
			return nil, fmt.Errorf("compile: %w", err)
		case err != nil:
			return nil, fmt.Errorf("compile: %w: %w", ErrKconfig, err)
		}
		names := make([]string, len(options))
		for i, o := range options {
			names[i] = "CONFIG_" + o
		}
		notes = append(notes, fmt.Sprintf("%s: the change is to %s, which this kernel's configuration leaves unset: it concerns how other kernels are configured, so the bundle leaves it out", fp.Path, strings.Join(names, ", ")))
	}
	return notes, nil
}
