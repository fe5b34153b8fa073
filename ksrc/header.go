package ksrc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// A patch to a header changes every unit that reads it and uses what it
// changes. Compile finds them in four steps, each narrowing the last:
//
//  1. the text: the include closure of the changed headers over the
//     tree's #include lines (includes.go), every .c file it reaches;
//  2. the use: the definitions the hunks change, closed over every
//     header the readers include, and the readers that mention one of
//     them or include a file whose use of one cannot be followed
//     (narrow.go, with the C scanner of cscan.go); where the scanner
//     cannot name what a hunk changes, every reader is kept;
//  3. the configuration: kbuild itself evaluates the Makefiles of those
//     files' folders (obj-y, obj-m, lib-y under the target's .config)
//     and prints what it would build there, for every folder it reaches
//     from the top, so a file of a folder the configuration never
//     enters is left out as well;
//  4. the dependencies: kbuild builds what is left, recording in
//     O/dir/.file.o.cmd every header the compiler read (deps_...), and a
//     unit is kept when that list names a changed header.
//
// Steps 2 and 3 bound the work: more than maxIncludeClosure units that
// may use the change (or, without step 2, files that include the
// header), or more than MaxHeaderUnits units the configuration builds,
// is refused before anything is compiled (a header of the core kernel
// reaches thousands).

// DefaultMaxHeaderUnits is how many units the configuration may build
// from the files that include a changed header before a patch to it is
// refused: each is compiled three times (by kbuild, then before and after
// the patch), about 3.7 s a unit on two cores (a header read by 79 units
// took 295 s), so the bound keeps the worst case near a quarter of an
// hour. kpatch-build has no such bound because it rebuilds the whole
// kernel; refusing a header only for its reach refuses what a livepatch
// may well carry, so the bound is set by time alone, and create's
// --max-header-units moves it.
const DefaultMaxHeaderUnits = 256

// maxIncludeClosure bounds the units that may use what a patch changes
// in a header (the files of the tree that include it, directly or not,
// when that cannot be narrowed) before kbuild is even asked.
const maxIncludeClosure = 4000

// ErrHeaderTooWide: a changed header reaches more units than the limit.
var ErrHeaderTooWide = errors.New("header included by too many units")

// HeaderError says that a changed header reaches too many units.
type HeaderError struct {
	Headers []string
	Units   int // units the configuration builds that may read them; 0 when not counted
	Files   int // files of the tree that include them, when Units was not counted
	Limit   int
	// Users is how many units of the tree may use Names, the changed
	// definitions, when they were too many for kbuild to be asked.
	Users int
	Names []string
	// Layout are the structs and unions whose members the patch changes
	// in the headers (layoutChanges): a change no livepatch carries, which
	// the refusal names beside the count.
	Layout []string
}

func (e *HeaderError) Error() string {
	msg := e.message()
	if len(e.Layout) > 0 {
		msg += fmt.Sprintf("; and the patch changes the members of %s: a data layout change, which the running kernel's "+
			"objects of the type and all code not replaced would not follow, so no livepatch carries it", nameList(e.Layout))
	}
	return msg
}

func (e *HeaderError) message() string {
	what := strings.Join(e.Headers, ", ")
	if e.Users > 0 {
		return fmt.Sprintf("%s: %v: %d units of the tree use what the patch changes in it (%s, or what other headers "+
			"make from them), more than %d (a change to a definition the core kernel uses reaches most of it)",
			what, ErrHeaderTooWide, e.Users, nameList(e.Names), e.Files)
	}
	if e.Units > 0 && len(e.Names) > 0 {
		return fmt.Sprintf("%s: %v: %d units the configuration builds use what the patch changes in it (%s), more than the limit of %d; "+
			"each would be compiled before and after the patch (a change to a definition of the core kernel, "+
			"such as a struct or a macro, is rarely carried by replacing functions)",
			what, ErrHeaderTooWide, e.Units, nameList(e.Names), e.Limit)
	}
	if e.Units > 0 {
		return fmt.Sprintf("%s: %v: %d units the configuration builds include it, more than the limit of %d; "+
			"each would be compiled before and after the patch (a change to a widely included header, "+
			"such as a struct or a macro of the core kernel, is rarely carried by replacing functions)",
			what, ErrHeaderTooWide, e.Units, e.Limit)
	}
	return fmt.Sprintf("%s: %v: more than %d files of the tree include it, directly or through other headers "+
		"(a change to a header of the core kernel reaches most of it)", what, ErrHeaderTooWide, e.Files)
}

func (e *HeaderError) Unwrap() error { return ErrHeaderTooWide }

// srcArch is kbuild's SRCARCH for this host (Prepare refuses another
// target architecture).
func srcArch() string {
	switch runtime.GOARCH {
	case "amd64", "386":
		return "x86"
	}
	return runtime.GOARCH
}

// headerCandidates returns the units the configuration builds whose
// include closure may reach one of the changed headers and that may use
// what the patch changes in them (steps 1 and 2), and the unchanged
// headers that must be copied beside the changed ones.
func (t *Tree) headerCandidates(ctx context.Context, log io.Writer, changed []unitSource, patch *Patch) (units, beside []string, err error) {
	var headers []string
	for _, c := range changed {
		headers = append(headers, c.path)
	}
	start := time.Now()
	fmt.Fprintf(log, "ksrc: reading the #include lines of %s to find what includes %s…\n", t.Source, strings.Join(headers, ", "))
	g, err := scanIncludes(t.Source, srcArch())
	if err != nil {
		return nil, nil, fmt.Errorf("compile: %w", err)
	}
	for _, h := range headers {
		if _, ok := g.files[h]; !ok {
			return nil, nil, fmt.Errorf("compile: %s: %w: a header of another architecture, or of a folder "+
				"that holds no kernel code", h, ErrUnsupportedFile)
		}
	}
	// The configuration's macros, for the conditionals around a change.
	var macros map[string]string
	if text, err := readBounded(filepath.Join(t.ObjDir, "include", "generated", "autoconf.h"), maxConfigSize); err == nil {
		macros = autoconfMacros(text)
	} else {
		fmt.Fprintf(log, "ksrc: the configuration's macros cannot be read (%v): every conditional around a change counts as read\n", err)
	}
	names := map[string][]string{}
	var all []string
	why := ""
	for _, c := range changed {
		ns, w := changedDefs(c.before, c.after, patch.File(c.path), macros)
		if w != "" {
			why = c.path + ": " + w
			break
		}
		names[c.path] = ns
		all = append(all, ns...)
	}
	var layout []string
	for _, c := range changed {
		for _, l := range layoutChanges(c.before, c.after, patch.File(c.path)) {
			if !slices.Contains(layout, l) {
				layout = append(layout, l)
			}
		}
	}
	var cands, used []string // used: the changed names, when the readers were narrowed to their users
	if why != "" {
		fmt.Fprintf(log, "ksrc: every unit that reads the header counts: %s\n", why)
		cands, beside, err = g.includers(headers, maxIncludeClosure)
		if err != nil {
			return nil, nil, &HeaderError{Headers: headers, Files: maxIncludeClosure, Limit: t.maxHeaderUnits, Layout: layout}
		}
		fmt.Fprintf(log, "ksrc: %d files of %d include it as the text says (%.1fs); asking kbuild which the configuration builds…\n",
			len(cands), len(g.files), time.Since(start).Seconds())
	} else {
		var readers []string
		readers, beside, _ = g.includers(headers, len(g.files)+1) // no bound: the tree bounds it
		texts := map[string][][]byte{}
		for _, c := range changed {
			texts[c.path] = [][]byte{c.before, c.after}
		}
		var derived int
		if cands, derived, err = g.usersOf(t.Source, readers, names, texts); err != nil {
			return nil, nil, fmt.Errorf("compile: %w", err)
		}
		slices.Sort(all)
		all = slices.Compact(all)
		used = all
		made := ""
		if derived > 0 {
			made = fmt.Sprintf(", or %d definitions of other headers made from them", derived)
		}
		fmt.Fprintf(log, "ksrc: %s: %d units read it; %d use %s (the changed definitions%s) (%.1fs); asking kbuild which the configuration builds…\n",
			strings.Join(headers, ", "), len(readers), len(cands), nameList(all), made, time.Since(start).Seconds())
		if len(cands) > maxIncludeClosure {
			return nil, nil, &HeaderError{Headers: headers, Users: len(cands), Names: all, Files: maxIncludeClosure, Limit: t.maxHeaderUnits, Layout: layout}
		}
	}
	if len(cands) == 0 {
		return nil, beside, nil
	}
	units, err = t.configured(ctx, log, cands)
	if err != nil {
		return nil, nil, err
	}
	if len(units) > t.maxHeaderUnits {
		return nil, nil, &HeaderError{Headers: headers, Units: len(units), Names: used, Limit: t.maxHeaderUnits, Layout: layout}
	}
	return units, beside, nil
}

// listGoal is the file name Compile asks kbuild to "make" in a folder for
// it to print what the configuration builds there; listRule makes it
// from the makefile kbuild reads in every folder (MAKEFILES), once
// kbuild has evaluated the folder's Makefile.
const (
	listGoal   = ".splicefleet-objs.lst"
	listPrefix = "splicefleet-objs "
	listRule   = `%/` + listGoal + `:
	@$(if $(filter $(obj)/` + listGoal + `,$@),echo '` + listPrefix + `$(obj) $(sort $(real-obj-y) $(real-obj-m) $(lib-y))',:)
`
)

// configured returns the files of cands (.c files of the tree) that the
// configuration builds: kbuild descends from the top only into the
// folders the configuration enables, and in each evaluates obj-y, obj-m
// and lib-y; a file counts when the folder it is in, or one above it
// (obj-y += sub/file.o), lists its object.
func (t *Tree) configured(ctx context.Context, log io.Writer, cands []string) ([]string, error) {
	dirs := map[string]bool{}
	for _, c := range cands {
		for d := path.Dir(t.objectOf(c)); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var goals []string
	for d := range dirs {
		goals = append(goals, d+"/"+listGoal)
	}
	slices.Sort(goals)
	mk, err := os.CreateTemp("", "splicefleet-objs-*.mk")
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	defer func() { _ = os.Remove(mk.Name()) }()
	if _, err := mk.WriteString(listRule); err != nil {
		mk.Close()
		return nil, fmt.Errorf("compile: %w", err)
	}
	if err := mk.Close(); err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	var out bytes.Buffer
	unlock, err := t.lock()
	if err != nil {
		return nil, err
	}
	err = t.makeEnv(ctx, &out, []string{"MAKEFILES=" + mk.Name()}, append([]string{"-s"}, goals...)...)
	unlock()
	if err != nil {
		_, _ = log.Write(out.Bytes())
		return nil, fmt.Errorf("compile: kbuild listing what the configuration builds in %d folders: %w", len(goals), err)
	}
	built := map[string]bool{}
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), listPrefix)
		if !ok {
			continue
		}
		for _, o := range strings.Fields(rest)[1:] {
			built[path.Clean(o)] = true
		}
	}
	var units []string
	for _, c := range cands {
		if built[t.objectOf(c)] {
			units = append(units, c)
		}
	}
	return units, nil
}

// depsNames reports whether the deps_ record of a kbuild .cmd file names
// one of headers (tree-relative), and which.
func depsNames(cmd []byte, target, source string, headers []string) []string {
	want := map[string]string{}
	for _, h := range headers {
		want[filepath.Join(source, filepath.FromSlash(h))] = h
	}
	var found []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(cmd))
	sc.Buffer(make([]byte, 64<<10), maxCmdFileSize)
	for sc.Scan() {
		line := sc.Text()
		if !in {
			in = strings.HasPrefix(line, "deps_"+target+" :=")
			continue
		}
		f := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), `\`))
		if f == "" && !strings.HasSuffix(line, `\`) {
			break
		}
		if strings.HasPrefix(f, "$(") {
			continue
		}
		if h, ok := want[filepath.Clean(f)]; ok && !slices.Contains(found, h) {
			found = append(found, h)
		}
		if !strings.HasSuffix(strings.TrimSpace(line), `\`) {
			break
		}
	}
	slices.Sort(found)
	return found
}
