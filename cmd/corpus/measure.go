package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/splicefleet/splicefleet/corpus"
	"github.com/splicefleet/splicefleet/internal/atomicfile"
	"github.com/splicefleet/splicefleet/ksrc"
	"github.com/splicefleet/splicefleet/lab"
)

// measure fetches what the corpus needs, splits it into units and runs
// them, printing progress to stderr and the table and summary to stdout.
func measure(ctx context.Context, cfg config, stdout, stderr io.Writer) (string, error) {
	root, err := lab.RepoRoot()
	if err != nil {
		return "", err
	}
	opts := lab.FetchOptions{ABI: cfg.abi, Log: stderr}
	k, err := lab.Fetch(ctx, opts)
	if err != nil {
		return "", err
	}
	if cfg.version != "" && cfg.version != k.PackageVersion {
		return "", fmt.Errorf("%w: CORPUS_VERSION=%s, but the archive serves the kernel of ABI %s at %s", errUsage, cfg.version, cfg.abi, k.PackageVersion)
	}
	series := strings.Join(strings.SplitN(k.ABI, ".", 3)[:2], ".")
	src, err := lab.FetchSource(ctx, opts, k)
	if err != nil {
		return "", err
	}
	dbg, err := lab.FetchDebugInfo(ctx, opts, k)
	if err != nil {
		return "", err
	}
	sysmap := filepath.Join(dbg, "usr", "lib", "debug", "boot", "System.map-"+k.Release)
	built, err := builtIndex(dbg, k.Release, src, stderr)
	if err != nil {
		return "", err
	}
	corpusDir := filepath.Join(root, ".cache", "corpus")
	if err := os.MkdirAll(corpusDir, 0o755); err != nil {
		return "", err
	}

	var units []corpus.Unit
	results := cfg.results
	if cfg.patches != "" {
		if units, err = patchUnits(cfg.patches); err != nil {
			return "", err
		}
		if results == "" {
			results = filepath.Join(corpusDir, fmt.Sprintf("%s-%s.jsonl", filepath.Base(cfg.patches), k.ABI))
		}
	} else {
		if units, err = debianUnits(ctx, opts, series, k.PackageVersion, cfg.to, src, corpusDir, stderr); err != nil {
			return "", err
		}
		if results == "" {
			results = filepath.Join(root, "docs", "corpus", fmt.Sprintf("debian-%s-to-%s.jsonl", k.PackageVersion, cfg.to))
		}
	}
	if err := os.MkdirAll(filepath.Dir(results), 0o755); err != nil {
		return "", err
	}
	fmt.Fprintf(stderr, "corpus: %s, for %s\n", corpus.Describe(units, built), k.Release)
	if len(cfg.units) > 0 {
		if units, err = selectUnits(units, cfg.units); err != nil {
			return "", err
		}
	} else {
		units = corpus.Sample(units, built, cfg.sample, cfg.seed)
	}
	if cfg.export != "" {
		return "", exportUnits(units, cfg.export, stderr)
	}
	fmt.Fprintf(stderr, "corpus: running %d units (results in %s)\n", len(units), results)

	bin, err := lab.BuildSplicefleet(ctx, "")
	if err != nil {
		return "", err
	}
	work, err := os.MkdirTemp("", "splicefleet-corpus-")
	if err != nil {
		return "", err
	}
	defer func() { _ = os.RemoveAll(work) }()
	if _, err := sf(ctx, bin, "signing-key", "generate", "--uid", "Corpus <corpus@example.com>", "--out", filepath.Join(work, "corpus")); err != nil {
		return "", err
	}
	trusted, err := os.ReadFile(filepath.Join(work, "corpus.pub.asc"))
	if err != nil {
		return "", err
	}
	m := &measurer{k: k, bin: bin, src: src, sysmap: sysmap, work: work, trusted: trusted,
		ksrcCache: filepath.Join(root, ".cache", "ksrc"), built: built, log: stderr, maxHeaderUnits: cfg.maxHeaderUnits}
	sum, err := corpus.Run(ctx, units, built, results, k.Release, m.check, stderr)
	printTable(stdout, sum)
	line := sum.Line()
	if err != nil {
		return line, err
	}
	fmt.Fprintln(stdout, line)
	return line, nil
}

// builtIndex reads the cached index of which files the kernel builds, or
// builds it from the debug info (about half a minute) and caches it.
func builtIndex(dbg, release, src string, log io.Writer) (corpus.Built, error) {
	name := filepath.Join(dbg, "built-sources.txt")
	if f, err := os.Open(name); err == nil {
		defer f.Close()
		return corpus.ReadBuilt(f)
	}
	start := time.Now()
	fmt.Fprintf(log, "corpus: indexing the source files of vmlinux and every module from their debug info…\n")
	b, err := corpus.IndexDebugInfo(dbg, release, src)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := b.WriteTo(&buf); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(name, buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "corpus: %d source files indexed in %.1fs\n", len(b), time.Since(start).Seconds())
	return b, nil
}

// debianUnits diffs the source trees of from and to (cached) and groups
// the diff by the changes the changelog of to lists since from.
func debianUnits(ctx context.Context, opts lab.FetchOptions, series, from, to, fromTree, dir string, log io.Writer) ([]corpus.Unit, error) {
	toTree, err := lab.FetchSourceVersion(ctx, opts, series, to)
	if err != nil {
		return nil, err
	}
	cl, err := lab.FetchChangelog(ctx, opts, series, to)
	if err != nil {
		return nil, err
	}
	entries, err := corpus.ParseChangelog(cl)
	if err != nil {
		return nil, err
	}
	changes, err := corpus.Between(entries, from, to)
	if err != nil {
		return nil, err
	}
	diffFile := filepath.Join(dir, fmt.Sprintf("linux-source-%s_%s_to_%s.diff", series, from, to))
	diff, err := os.ReadFile(diffFile)
	if err != nil {
		start := time.Now()
		fmt.Fprintf(log, "corpus: diff -rupN %s %s…\n", fromTree, toTree)
		if diff, err = treeDiff(ctx, fromTree, toTree); err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(diffFile, diff, 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "corpus: tree diff done in %.1fs\n", time.Since(start).Seconds())
	}
	files, err := corpus.ParseTreeDiff(diff)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", diffFile, err)
	}
	units := corpus.Group(files, changes, os.DirFS(fromTree))
	fmt.Fprintf(log, "corpus: %d changed files, %d changes listed, %d units\n", len(files), len(changes), len(units))
	return units, nil
}

// treeDiff runs diff -rupN with the trees as a/ and b/ (symbolic links in
// a scratch folder), so the paths read a/PATH and b/PATH.
func treeDiff(ctx context.Context, from, to string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "splicefleet-corpus-diff-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	if err := os.Symlink(from, filepath.Join(tmp, "a")); err != nil {
		return nil, err
	}
	if err := os.Symlink(to, filepath.Join(tmp, "b")); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "diff", "-rupN", "a/", "b/")
	cmd.Dir = tmp
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 1) { // 1: the trees differ
		return nil, fmt.Errorf("diff -rupN: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// patchUnits reads every *.patch of dir as one unit, named by its file.
func patchUnits(dir string) ([]corpus.Unit, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.patch"))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: CORPUS_PATCHES=%s has no *.patch files", errUsage, dir)
	}
	sort.Strings(names)
	var units []corpus.Unit
	for _, n := range names {
		raw, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		p, err := ksrc.ParsePatch(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		u := corpus.Unit{ID: filepath.Base(n), Subject: patchSubject(raw, filepath.Base(n)), Files: p.Files(), Patch: raw}
		for _, fp := range p.FilePatches() {
			u.Hunks += len(fp.Hunks)
		}
		units = append(units, u)
	}
	return units, nil
}

type measurer struct {
	k                *lab.DebianKernel
	bin, src, sysmap string
	work, ksrcCache  string
	trusted          []byte
	built            corpus.Built
	log              io.Writer
	maxHeaderUnits   int // create's --max-header-units; 0 is its default
}

// check runs one unit through create --patch and, with a bundle, the
// guest check.
func (m *measurer) check(ctx context.Context, u corpus.Unit, r *corpus.Record) error {
	patch := filepath.Join(m.work, "unit.patch")
	bundle := filepath.Join(m.work, "unit.splice")
	_ = os.Remove(bundle)
	if err := os.WriteFile(patch, u.Patch, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(m.log, "corpus: %s %s (%s; %s)\n", u.ID, u.Subject, strings.Join(u.Files, ", "), strings.Join(r.Objects, ", "))
	start := time.Now()
	args := []string{"create", "--patch", patch, "--kernel-source", m.src, "--kernel-build", m.k.HeadersDir,
		"--system-map", m.sysmap, "--vmlinux", filepath.Join(filepath.Dir(m.sysmap), "vmlinux-"+m.k.Release), "--modules", filepath.Join(m.k.Root, "lib", "modules", m.k.Release), "--cache-dir", m.ksrcCache, "--id", guestID, "--version", "1",
		"--module-name", guestModule, "--description", "corpus unit " + u.ID, "-o", bundle}
	if m.maxHeaderUnits > 0 {
		args = append(args, "--max-header-units", strconv.Itoa(m.maxHeaderUnits))
	}
	out, err := sf(ctx, m.bin, args...)
	r.CreateSeconds = time.Since(start).Seconds()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ee *exec.ExitError
	if err != nil {
		if !errors.As(err, &ee) {
			return err // the binary did not run: the instrument failed
		}
		if p := crashOf(out); p != "" {
			// A crash is the instrument's failure, not the unit's: the
			// run stops, and the unit is not recorded.
			return fmt.Errorf("create --patch crashed: %s", p)
		}
		// The patch is a scratch file: name the unit instead.
		r.Reason = strings.ReplaceAll(refusalOf(out, ee.ExitCode()), patch, u.ID)
		r.Outcome = corpus.RefusalOutcome(r.Reason)
		return nil
	}
	r.Unreached = corpus.UnreachedNames(out)
	if _, err := sf(ctx, m.bin, "sign", "--key", filepath.Join(m.work, "corpus.sec.asc"), bundle); err != nil {
		return err
	}
	data, err := os.ReadFile(bundle)
	if err != nil {
		return err
	}
	// The modules of the unit's own C files: a header's objects are
	// every module that includes it.
	var cfiles []string
	for _, f := range u.Files {
		if strings.HasSuffix(f, ".c") {
			cfiles = append(cfiles, f)
		}
	}
	mods, err := modulesFor(m.k, m.built.Objects(cfiles))
	if err != nil {
		return err
	}
	why, wall, err := guestCheck(ctx, m.k, m.bin, data, m.trusted, mods)
	r.GuestSeconds = wall.Seconds()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, lab.ErrUnfinished):
		r.Outcome, r.Reason = corpus.Failed, "the guest did not finish: "+firstLine(err.Error())
	case err != nil:
		return err
	case why != "":
		r.Outcome, r.Reason = corpus.Failed, why
	default:
		r.Outcome = corpus.Passed
	}
	return nil
}

// crashOf is the panic line of a Go program's crash output, or "".
func crashOf(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "panic: ") {
			return l
		}
	}
	return ""
}

// refusalOf is create's own last word: its final "splicefleet: " line.
func refusalOf(out string, code int) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if msg, ok := strings.CutPrefix(lines[i], "splicefleet: "); ok {
			if code != 1 {
				return fmt.Sprintf("exit %d: %s", code, msg)
			}
			return msg
		}
	}
	return fmt.Sprintf("exit %d: %s", code, firstLine(lines[len(lines)-1]))
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// sf runs the splicefleet binary and returns its combined output.
func sf(ctx context.Context, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// printTable prints the outcome counts and the reasons, most frequent
// first.
func printTable(w io.Writer, s corpus.Summary) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "units\t%d\n", s.Units)
	fmt.Fprintf(tw, "built for this configuration\t%d\n", s.Built)
	fmt.Fprintf(tw, "built, object code unchanged (not in U)\t%d\n", s.Unchanged)
	fmt.Fprintf(tw, "bundles created\t%d\n", s.Created)
	fmt.Fprintf(tw, "passed the guest check\t%d\n", s.Passed)
	fmt.Fprintf(tw, "  of them together with other changes of the update\t%d\n", s.Together)
	fmt.Fprintf(tw, "naming a CVE: built, created, passed\t%d, %d, %d\n", s.CVEBuilt, s.CVECreated, s.CVEPassed)
	type kv struct {
		k string
		v int
	}
	var rs []kv
	for k, v := range s.Reasons {
		rs = append(rs, kv{k, v})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].v > rs[j].v || rs[i].v == rs[j].v && rs[i].k < rs[j].k })
	for _, r := range rs {
		fmt.Fprintf(tw, "  %s\t%d\n", r.k, r.v)
	}
	_ = tw.Flush()
}

// selectUnits picks the units named by CORPUS_UNITS, in corpus order; a
// name that is no unit is a usage error.
// exportUnits writes each unit's patch to dir as ID.patch, the id made a
// file name.
func exportUnits(units []corpus.Unit, dir string, log io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, u := range units {
		name := filepath.Join(dir, exportName(u.ID))
		if err := os.WriteFile(name, u.Patch, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(log, "corpus: wrote %d patches to %s\n", len(units), dir)
	return nil
}

// exportName is a unit's patch file name: its id with ":" and "/" as "_".
func exportName(id string) string {
	return strings.NewReplacer(":", "_", "/", "_").Replace(id) + ".patch"
}

func selectUnits(units []corpus.Unit, ids []string) ([]corpus.Unit, error) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var out []corpus.Unit
	for _, u := range units {
		if want[u.ID] {
			out = append(out, u)
			delete(want, u.ID)
		}
	}
	if len(want) > 0 {
		var missing []string
		for id := range want {
			missing = append(missing, id)
		}
		sort.Strings(missing)
		return nil, fmt.Errorf("%w: CORPUS_UNITS names no unit %s", errUsage, strings.Join(missing, ", "))
	}
	return out, nil
}

var patchTag = regexp.MustCompile(`^\[[^\]]*\]\s*`)

// patchSubject is a patch's "Subject:" header (git format-patch's, its
// [PATCH] tag dropped), or else its file name.
func patchSubject(raw []byte, name string) string {
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "--- ") || strings.HasPrefix(line, "diff ") {
			break
		}
		if subj, ok := strings.CutPrefix(line, "Subject: "); ok {
			return patchTag.ReplaceAllString(strings.TrimSpace(subj), "")
		}
	}
	return name
}
