package ksrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// A function livepatch cannot redirect (no __fentry__ call at its entry:
// all of lib/ and kernel/trace/ are built without ftrace in 6.1) can
// still be carried as a new function beside the kernel's copy, when
// every function that calls it is replaced so that its copy calls the
// new one. For a global function those callers are in other units:
// CompileCallers finds them as a changed header's users are found
// (narrow.go), with the function's names as the changed definitions and
// every .c file of the tree as a reader: the files that mention one of
// the names, or include a header whose definitions (an inline function,
// a macro) are made from them, in turn. kbuild then says which of them
// the configuration builds, and each is compiled once, unchanged. The
// objects, not the text, decide which of their functions call the
// names, and whether any reference is not a call (objdiff).

// ErrTooManyCallers: the units that may call a function the bundle
// must carry as a new function are more than the bound.
var ErrTooManyCallers = errors.New("too many units may call a function that cannot be redirected")

// CompileCallers compiles, unchanged, every unit of the configuration
// that may call one of names, but those of skip (the units the patch
// compiles already). More than the tree's MaxHeaderUnits such units is
// ErrTooManyCallers. The caller cleans the units up.
func (t *Tree) CompileCallers(ctx context.Context, names, skip []string, log io.Writer) (*Units, error) {
	if log == nil {
		log = t.log
	}
	if log == nil {
		log = io.Discard
	}
	if len(names) == 0 {
		return nil, errors.New("compile callers: no names")
	}
	start := time.Now()
	g, err := scanIncludes(t.Source, srcArch())
	if err != nil {
		return nil, fmt.Errorf("compile callers: %w", err)
	}
	var files []string
	for f := range g.files {
		if strings.HasSuffix(f, ".c") && !slices.Contains(skip, f) {
			files = append(files, f)
		}
	}
	slices.Sort(files)
	users, derived, err := g.usersOf(t.Source, files, map[string][]string{"": names}, nil)
	if err != nil {
		return nil, fmt.Errorf("compile callers: %w", err)
	}
	made := ""
	if derived > 0 {
		made = fmt.Sprintf(", or %d definitions of headers made from them", derived)
	}
	fmt.Fprintf(log, "ksrc: %d files of the tree may call %s%s (%.1fs); asking kbuild which the configuration builds…\n",
		len(users), nameList(names), made, time.Since(start).Seconds())
	if len(users) > maxIncludeClosure {
		return nil, fmt.Errorf("compile callers: %w: %d files of the tree may call %s, more than %d",
			ErrTooManyCallers, len(users), nameList(names), maxIncludeClosure)
	}
	units := &Units{}
	if len(users) == 0 {
		return units, nil
	}
	built, err := t.configured(ctx, log, users)
	if err != nil {
		return nil, err
	}
	if len(built) > t.maxHeaderUnits {
		return nil, fmt.Errorf("compile callers: %w: %d units the configuration builds may call %s, more than the limit of %d "+
			"(each is compiled to find its calls, and replaced where it calls)", ErrTooManyCallers, len(built), nameList(names), t.maxHeaderUnits)
	}
	if len(built) == 0 {
		return units, nil
	}
	fmt.Fprintf(log, "ksrc: %s may call %s: compiled to find the calls\n", strings.Join(built, ", "), nameList(names))
	work, err := os.MkdirTemp("", "splicefleet-callers-")
	if err != nil {
		return nil, fmt.Errorf("compile callers: %w", err)
	}
	units.dir = work
	ok := false
	defer func() {
		if !ok {
			_ = units.Cleanup()
		}
	}()
	unlock, err := t.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := t.kbuildUnits(ctx, log, &unitPlan{readers: built}); err != nil {
		return nil, err
	}
	for _, r := range built {
		text, err := readBounded(filepath.Join(t.Source, filepath.FromSlash(r)), MaxSourceSize)
		if err != nil {
			return nil, fmt.Errorf("compile callers: %w", err)
		}
		u, err := t.compileUnit(ctx, log, work, r, text, nil, nil)
		if err != nil {
			return nil, err
		}
		units.List = append(units.List, u)
	}
	ok = true
	return units, nil
}
