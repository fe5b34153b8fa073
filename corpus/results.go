package corpus

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// Outcomes of a unit, as Record.Outcome says them.
const (
	// NotBuilt: the target configuration compiles none of the unit's files.
	NotBuilt = "not-built"
	// Unchanged: the configuration builds the unit's files, but its
	// change compiles to the same object code (create --patch: it
	// "changes the object code of no function", and no data either): a
	// comment, a declaration nothing calls, code under an option the
	// configuration leaves off, a type spelled differently. The running
	// kernel already runs what the fixed source compiles to; there is
	// nothing to carry, so the unit is not counted in U.
	Unchanged = "unchanged"
	// Refused: create --patch refused the unit (Record.Reason says why).
	Refused = "refused"
	// Failed: a bundle was created and failed the guest check.
	Failed = "failed"
	// Passed: a bundle was created and passed the guest check.
	Passed = "passed"
)

// Record is one line of a results file: what happened to one unit.
type Record struct {
	ID      string   `json:"id"`
	Subject string   `json:"subject,omitempty"`
	CVEs    []string `json:"cves,omitempty"`
	Files   []string `json:"files"`
	// Took are the hunks the unit took along from other units (Unit.Took).
	Took []TakenHunk `json:"took,omitempty"`
	// With are the other units of the update the unit was measured
	// together with, because it did not build without them (Unit.Widen);
	// Files and Objects are then those of all of them.
	With []string `json:"with,omitempty"`
	// Unreached are the functions the unit's bundle adds that nothing it
	// carries uses (create's warning; see Unit.WidenUsers).
	Unreached []string `json:"unreached,omitempty"`
	// Objects are what the configuration builds the unit's files into
	// ("vmlinux" first, then module names), at most MaxObjects of them
	// (a header is in hundreds); ObjectCount is how many there are. Empty
	// when not built.
	Objects     []string `json:"objects,omitempty"`
	ObjectCount int      `json:"object_count,omitempty"`
	// Outcome is NotBuilt, Refused, Failed or Passed.
	Outcome string `json:"outcome"`
	// Reason is create's refusal, or the guest check that failed.
	Reason string `json:"reason,omitempty"`
	// CreateSeconds and GuestSeconds are how long each step took.
	CreateSeconds float64 `json:"create_seconds,omitempty"`
	GuestSeconds  float64 `json:"guest_seconds,omitempty"`
	// Kernel is the target kernel's release; At is when the unit ran.
	Kernel string `json:"kernel,omitempty"`
	At     string `json:"at"`
}

// MaxObjects bounds Record.Objects.
const MaxObjects = 16

// Built says the configuration builds code the unit changes: the unit
// counts in U.
func (r *Record) Built() bool { return r.Outcome != NotBuilt && r.Outcome != Unchanged }

// RefusalOutcome is the outcome of a unit create --patch refused for
// reason: Unchanged when the reason is that no function's object code
// changed (create refuses data changes with their own reasons), else
// Refused.
func RefusalOutcome(reason string) string {
	if ReasonClass(reason) == noCodeChange {
		return Unchanged
	}
	return Refused
}

// noCodeChange is the reason class of create's refusal of a patch that
// changes no function's object code.
const noCodeChange = "no function code changed"

// Created says create --patch made a bundle.
func (r *Record) Created() bool { return r.Outcome == Passed || r.Outcome == Failed }

// ErrResults is returned for a results file that cannot be read.
var ErrResults = errors.New("results")

// ReadResults reads a results file (JSON lines) into records by unit ID;
// a later line for the same unit replaces an earlier one. A missing file
// is no results. A line that is not a record is an error naming it: the
// file is the measurement, and a damaged one is not silently rerun.
func ReadResults(name string) (map[string]Record, error) {
	out := map[string]Record{}
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResults, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil || r.ID == "" || r.Outcome == "" {
			return nil, fmt.Errorf("%w: %s line %d is not a unit's record", ErrResults, name, n)
		}
		out[r.ID] = r
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrResults, name, err)
	}
	return out, nil
}

// appendRecord appends one record to the results file and syncs it, so a
// run stopped at any point keeps every unit it finished.
func appendRecord(name string, r Record) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // reasons read "a -> b", not "a -\u003e b"
	if err := enc.Encode(r); err != nil {
		return err
	}
	b := bytes.TrimRight(buf.Bytes(), "\n")
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrResults, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("%w: %v", ErrResults, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("%w: %v", ErrResults, err)
	}
	return f.Close()
}

// Summary counts the records of one run.
type Summary struct {
	// Units is every unit considered; Built those the configuration
	// builds and whose change it compiles to different object code (U);
	// Unchanged those it builds but compiles to the same code (not in
	// U); Created those with a bundle (C), Passed those whose
	// bundle passed the guest check (G).
	Units, Built, Unchanged, Created, Passed int
	// CVEBuilt, CVECreated and CVEPassed count the same for the units
	// whose change names a CVE.
	CVEBuilt, CVECreated, CVEPassed int
	// Together counts the units that passed only together with other
	// units of the update (Record.With).
	Together int
	// Reasons counts refusals and guest failures by reason class.
	Reasons map[string]int
}

// Add counts one record.
func (s *Summary) Add(r Record) {
	s.Units++
	if r.Outcome == Unchanged {
		s.Unchanged++
	}
	if !r.Built() {
		return
	}
	s.Built++
	cve := len(r.CVEs) > 0
	if cve {
		s.CVEBuilt++
	}
	if r.Created() {
		s.Created++
		if cve {
			s.CVECreated++
		}
	}
	if r.Outcome == Passed {
		s.Passed++
		if len(r.With) > 0 {
			s.Together++
		}
		if cve {
			s.CVEPassed++
		}
	}
	if r.Outcome == Refused || r.Outcome == Failed {
		if s.Reasons == nil {
			s.Reasons = map[string]int{}
		}
		s.Reasons[r.Outcome+": "+ReasonClass(r.Reason)]++
	}
}

// Line is the summary's last line, which scripts read:
// "corpus: U units built for this configuration, C bundles created, G
// passed the guest check (P%)" with P = G/U to one decimal.
func (s Summary) Line() string {
	p := 0.0
	if s.Built > 0 {
		p = 100 * float64(s.Passed) / float64(s.Built)
	}
	return fmt.Sprintf("corpus: %d units built for this configuration, %d bundles created, %d passed the guest check (%.1f%%)",
		s.Built, s.Created, s.Passed, p)
}

// Reason classes Run widens a unit for (see Unit.Widen).
const (
	classMissingSymbol = "a symbol the running kernel does not have"
	classNeedsOther    = "does not build without another change of the update"
)

// ReasonClass reduces a reason to its kind for counting: file names,
// symbol names and numbers are what vary between units of one kind.
func ReasonClass(reason string) string {
	if _, problems, ok := strings.Cut(reason, "livepatched safely: "); ok {
		// objdiff's list of problems: class by the first, "KIND NAME: why".
		first, _, _ := strings.Cut(problems, "; ")
		kind, rest, _ := strings.Cut(first, " ")
		if kind == "section" {
			name, _, _ := strings.Cut(rest, ":")
			return "section " + name
		}
		return kind
	}
	switch {
	case strings.Contains(reason, "header included by too many units") && strings.Contains(reason, "a data layout change"):
		return "a header reaching too many units, changing a struct's layout"
	case strings.Contains(reason, "header included by too many units"):
		return "a header reaching too many units"
	case strings.Contains(reason, "is neither a symbol of"):
		return classMissingSymbol
	case strings.Contains(reason, "(after the patch): build failed"):
		// The unit's hunks alone do not compile against the older tree:
		// they use what another change of the update adds or changes.
		return classNeedsOther
	case strings.Contains(reason, "cannot be redirected, and") && strings.Contains(reason, "other than by a call from a function the bundle replaces"),
		strings.Contains(reason, "too many units may call a function that cannot be redirected"):
		// Carried as a new function, its callers must all be replaced.
		return "a function livepatch cannot redirect, reached by code the bundle cannot replace"
	case strings.Contains(reason, "compiled without ftrace"):
		return "file compiled without ftrace"
	case strings.Contains(reason, "does not call __fentry__ at its entry"):
		return "a changed function livepatch cannot redirect (notrace)"
	case strings.Contains(reason, "could not load a module of the unit"):
		return "module cannot load in the guest"
	case strings.Contains(reason, "which the patched module") && strings.Contains(reason, "cannot reach"):
		return "another module's export, out of reach"
	case strings.Contains(reason, "is built into module"):
		return "module code (vmlinux only for now)"
	case strings.Contains(reason, "a header change"):
		return "header change"
	case strings.Contains(reason, "touches") && strings.Contains(reason, "files"):
		return "several files"
	case strings.Contains(reason, "a Kconfig change concerns this kernel"):
		return "Kconfig change to this kernel's configuration"
	case strings.Contains(reason, "only C files"):
		return "not a C file"
	case strings.Contains(reason, "new files") || strings.Contains(reason, "deleting files"):
		return "new or deleted file"
	case strings.Contains(reason, "section "):
		if i := strings.Index(reason, "section "); i >= 0 {
			name, _, _ := strings.Cut(reason[i+len("section "):], ":")
			return "special section " + strings.Fields(name + " x")[0]
		}
	case strings.Contains(reason, "inlined"):
		return "inlined function changed"
	case strings.Contains(reason, "data "):
		return "data changed or added"
	case strings.Contains(reason, "init "):
		return "init code"
	case strings.Contains(reason, "signature "):
		return "function signature changed"
	case strings.Contains(reason, "ambiguous"):
		return "ambiguous symbol"
	case strings.Contains(reason, "changes the object code of no function"),
		strings.Contains(reason, "no unit the configuration builds reads what the patch changes"):
		// No built unit's code differs, or none uses what a header
		// changes: the running kernel already runs the fixed code.
		return noCodeChange
	case strings.Contains(reason, "does not apply"):
		return "patch does not apply"
	case strings.Contains(reason, "binary patches"):
		return "binary file"
	}
	first, _, _ := strings.Cut(reason, "\n")
	if len(first) > 80 {
		first = first[:80] + "…"
	}
	return first
}

// Check runs one built unit through create --patch and, when a bundle is
// made, the guest check; it fills in Outcome, Reason and the times of r.
// An error is a failure of the instrument (not of the unit): the run
// stops and the unit is not recorded, so the next run retries it.
type Check func(ctx context.Context, u Unit, r *Record) error

// Run measures units: a unit the results file already records is
// skipped (its record counts); a unit none of whose files the
// configuration builds is recorded NotBuilt; every other one goes through
// check and is recorded, one line appended and synced per unit. It
// returns the summary of the given units. Progress lines go to log.
func Run(ctx context.Context, units []Unit, built Built, resultsFile, kernel string, check Check, log io.Writer) (Summary, error) {
	if log == nil {
		log = io.Discard
	}
	var s Summary
	done, err := ReadResults(resultsFile)
	if err != nil {
		return s, err
	}
	for i, u := range units {
		if r, ok := done[u.ID]; ok {
			fmt.Fprintf(log, "corpus: [%d/%d] %s: %s (recorded)\n", i+1, len(units), u.ID, r.Outcome)
			s.Add(r)
			continue
		}
		if err := ctx.Err(); err != nil {
			return s, err
		}
		objs := built.Objects(u.Files)
		r := Record{ID: u.ID, Subject: u.Subject, CVEs: u.CVEs, Files: u.Files, Took: u.Took, Objects: objs[:min(len(objs), MaxObjects)],
			ObjectCount: len(objs), Kernel: kernel, At: time.Now().UTC().Format(time.RFC3339)}
		if len(r.Objects) == 0 {
			r.Outcome = NotBuilt
		} else if r, err = measureWidening(ctx, u, r, built, check, log); err != nil {
			return s, fmt.Errorf("%s: %w", u.ID, err)
		}
		if r.Outcome == "" {
			return s, fmt.Errorf("%s: the check gave no outcome", u.ID)
		}
		if err := appendRecord(resultsFile, r); err != nil {
			return s, err
		}
		fmt.Fprintf(log, "corpus: [%d/%d] %s: %s %s\n", i+1, len(units), u.ID, r.Outcome, firstLine(r.Reason))
		s.Add(r)
	}
	return s, nil
}

// measureWidening checks u and, while its build lacks what other units
// of the update hold, checks it again together with them (Unit.Widen), at
// most MaxWidenRounds times. The record is the last check's, with the
// create time of all of them.
func measureWidening(ctx context.Context, u Unit, r Record, built Built, check Check, log io.Writer) (Record, error) {
	base := r
	if err := check(ctx, u, &r); err != nil {
		return r, err
	}
	spent := r.CreateSeconds
	for range MaxWidenRounds {
		var (
			w    Unit
			with []string
			why  string
		)
		switch c := ReasonClass(r.Reason); {
		case r.Outcome == Refused && (c == classNeedsOther || c == classMissingSymbol):
			w, with = u.Widen(MissingNames(r.Reason))
			why = firstLine(r.Reason)
		case r.Created() && len(r.Unreached) > 0:
			w, with = u.WidenUsers(r.Unreached)
			why = "nothing in its bundle uses " + strings.Join(r.Unreached, ", ")
		}
		if len(with) == 0 {
			break
		}
		fmt.Fprintf(log, "corpus: %s: %s; again together with %s\n", u.ID, why, strings.Join(with, ", "))
		u = w
		objs := built.Objects(u.Files)
		r = base
		r.Files, r.With = u.Files, u.With
		r.Objects, r.ObjectCount = objs[:min(len(objs), MaxObjects)], len(objs)
		if err := check(ctx, u, &r); err != nil {
			return r, err
		}
		spent += r.CreateSeconds
		r.CreateSeconds = spent
	}
	return r, nil
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// Sample picks n of the units the configuration builds: those whose
// keyed hash of seed and id ranks lowest, in the units' order. A unit's
// rank depends on its id and the seed alone, so the same seed gives the
// same sample, a larger sample holds the smaller one (a run can grow and
// resume), and a corpus that gains or loses units elsewhere (a better
// grouping, a new take-along) keeps the rest of its sample and the
// records already measured. n <= 0, or n at least the number of built
// units, gives every unit (built or not).
func Sample(units []Unit, built Built, n int, seed uint64) []Unit {
	type ranked struct {
		i    int
		rank uint64
	}
	var rs []ranked
	for i, u := range units {
		if len(built.Objects(u.Files)) > 0 {
			rs = append(rs, ranked{i, sampleRank(seed, u.ID)})
		}
	}
	if n <= 0 || n >= len(rs) {
		return units
	}
	sort.Slice(rs, func(a, b int) bool { return rs[a].rank < rs[b].rank || rs[a].rank == rs[b].rank && rs[a].i < rs[b].i })
	rs = rs[:n]
	sort.Slice(rs, func(a, b int) bool { return rs[a].i < rs[b].i })
	out := make([]Unit, 0, n)
	for _, r := range rs {
		out = append(out, units[r.i])
	}
	return out
}

// sampleRank is a unit's place in every sample of seed: the first eight
// bytes of SHA-256 over the seed and the id.
func sampleRank(seed uint64, id string) uint64 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seed)
	h := sha256.New()
	h.Write(b[:])
	h.Write([]byte(id))
	return binary.BigEndian.Uint64(h.Sum(nil))
}

// Breakdown describes a corpus before anything runs: how its units were
// formed and what the configuration builds of them, by the first gate of
// create --patch each would meet.
type Breakdown struct {
	Units, Attributed, PerFile, CVE int
	Built, BuiltCVE                 int
	// Of the built units: touching a header, several C files, one C file
	// of a module, one C file of vmlinux; Other is the rest (built files
	// that are neither .c nor .h, e.g. an assembler file).
	Header, SeveralFiles, Module, Vmlinux, Other int
	// TookAlong counts the built units that took hunks along from other
	// units (Unit.Took).
	TookAlong int
}

// Describe counts units by how they were formed and what is built.
func Describe(units []Unit, built Built) Breakdown {
	var b Breakdown
	for _, u := range units {
		b.Units++
		if u.Subject != "" {
			b.Attributed++
		} else {
			b.PerFile++
		}
		cve := len(u.CVEs) > 0
		if cve {
			b.CVE++
		}
		objs := built.Objects(u.Files)
		if len(objs) == 0 {
			continue
		}
		b.Built++
		if cve {
			b.BuiltCVE++
		}
		if len(u.Took) > 0 {
			b.TookAlong++
		}
		var headers, cfiles int
		for _, f := range u.Files {
			switch {
			case strings.HasSuffix(f, ".h"):
				headers++
			case strings.HasSuffix(f, ".c"):
				cfiles++
			}
		}
		switch {
		case headers > 0:
			b.Header++
		case cfiles > 1:
			b.SeveralFiles++
		case cfiles == 1 && objs[0] == Vmlinux:
			b.Vmlinux++
		case cfiles == 1:
			b.Module++
		default:
			b.Other++
		}
	}
	return b
}

func (b Breakdown) String() string {
	return fmt.Sprintf("%d units (%d attributed to a change, %d per file; %d name a CVE), %d built by the configuration "+
		"(%d name a CVE): %d one C file of vmlinux, %d one C file of a module, %d several C files, %d touch a header, %d other; %d took declarations along",
		b.Units, b.Attributed, b.PerFile, b.CVE, b.Built, b.BuiltCVE, b.Vmlinux, b.Module, b.SeveralFiles, b.Header, b.Other, b.TookAlong)
}
