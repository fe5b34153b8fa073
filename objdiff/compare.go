package objdiff

import (
	"cmp"
	"debug/elf"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Diff opens two objects under [DefaultLimits] and compares them.
func Diff(preName string, pre []byte, postName string, post []byte) (*Result, error) {
	return DiffWith(preName, pre, postName, post, Options{})
}

// Options change what Compare takes as changed.
type Options struct {
	// Kernel says that both objects were built by the kernel's build with
	// its flags, so that an object calling no __fentry__ was built
	// without ftrace on purpose (kbuild removes -pg for lib/ and
	// kernel/trace/ in 6.1) rather than without the kernel's flags: none
	// of its functions can be redirected (Function.Unredirectable).
	Kernel bool
	// CallersOf are global functions of other objects that the bundle
	// carries as new functions (Function.Unredirectable there): every
	// function of this object that refers to one is taken as changed, so
	// that the bundle replaces it and its copy calls the bundle's.
	CallersOf []string
	// InitRan says that the objects are of vmlinux, whose init code
	// ran at boot and was freed: a call from it reaches nothing that
	// can run again, so it need not be replaced (a module's init code
	// runs at every load, and stays a reference left in place).
	InitRan bool
}

// DiffWith is Diff with Options.
func DiffWith(preName string, pre []byte, postName string, post []byte, opts Options) (*Result, error) {
	a, err := Open(preName, pre)
	if err != nil {
		return nil, err
	}
	b, err := Open(postName, post)
	if err != nil {
		return nil, err
	}
	return CompareWith(a, b, opts), nil
}

// Compare reports how post differs from pre: the functions changed, added
// and removed, and the differences a livepatch cannot carry.
func Compare(pre, post *Object) *Result { return CompareWith(pre, post, Options{}) }

// CompareWith is Compare with Options.
func CompareWith(pre, post *Object, opts Options) *Result {
	c := &comparison{
		pre: pre, post: post, opts: opts,
		changed: map[string]bool{},
		res: &Result{
			Pre: pre.name, Post: post.name,
			DebugInfo: pre.debug != nil && post.debug != nil,
			Changed:   []Function{}, Added: []Function{}, Removed: []Function{}, AddedData: []Function{},
			Unsafe: []Problem{},
		},
	}
	c.matchUnique()
	c.functions()
	c.callersOf()
	c.replaceCallers()
	c.variables()
	c.specialSections()
	c.looseCode()
	c.renumberedReferences()
	c.reach()
	c.forkUnredirectable()
	if c.res.DebugInfo {
		c.signatures()
		c.initSideEffects(c.inlines())
		c.layouts()
	} else {
		c.vanished()
		c.res.Notes = append(c.res.Notes, pre.notes...)
		c.res.Notes = append(c.res.Notes, post.notes...)
		c.res.Notes = append(c.res.Notes, "without debug info (-g) in both objects, an inlined function is found only when its symbol disappears, and prototypes are not compared")
	}
	r := c.res
	r.externs = externCalls(post, c.postReplaced, c.opts.InitRan)
	byName := func(a, b Function) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(r.Changed, byName)
	slices.SortFunc(r.Added, byName)
	slices.SortFunc(r.Removed, byName)
	slices.SortFunc(r.Unsafe, func(a, b Problem) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(string(a.Kind), string(b.Kind)))
	})
	return r
}

type comparison struct {
	pre, post *Object
	opts      Options
	changed   map[string]bool
	res       *Result
	// rename maps renumbered __UNIQUE_ID symbols and function-local
	// statics of Post to their match in Pre; postFuncs and postData are
	// Post's entities keyed by the name of their match (matchUnique).
	rename map[string]string
	// localMatched are the function-local statics of Pre that a static of
	// Post was paired with by the functions referring to them
	// (matchLocalStatics), under its own name or another.
	localMatched                   map[string]bool
	postFuncs, postData, postDescs map[string]*entity
}

func (c *comparison) problem(p Problem) { c.res.Unsafe = append(c.res.Unsafe, p) }

// layouts refuses a struct or union of both objects whose layout
// changed (a member added, removed, moved or resized): the kernel's
// objects of the type were laid out by the old code, which keeps
// running beside the new (a header change shows it in every unit
// that includes the header). A type that only the unit's own stacks
// hold, in both objects, is accepted with a note (stack.go).
func (c *comparison) layouts() {
	a, b := c.pre.debug.layouts, c.post.debug.layouts
	for _, name := range sortedKeys(a) {
		after, ok := b[name]
		if !ok || a[name] == after {
			continue
		}
		change := layoutChange(a[name], after)
		why := c.pre.debug.stackOnly(name)
		if why == "" {
			why = c.post.debug.stackOnly(name)
		}
		if why == "" {
			c.res.Notes = append(c.res.Notes, fmt.Sprintf("%s: data layout changed (%s), accepted: it is defined in the compiled file itself "+
				"and held only by value in local variables and through pointer parameters of static functions, so only a task's own stack "+
				"holds it; a task runs wholly old or wholly new code, and every function whose code depends on the layout has changed and is replaced", name, change))
			continue
		}
		c.problem(Problem{Kind: KindData, Name: name, Reason: "data layout changed (" + change +
			"): the kernel's objects of this type, and all code not replaced, keep the old layout (not only on a stack: " + why + ")"})
	}
}

// layoutChange says how two layouts differ: the size, or the first
// member that differs.
func layoutChange(a, b string) string {
	pa, pb := strings.Split(a, "; "), strings.Split(b, "; ")
	if pa[0] != pb[0] {
		return pa[0] + " -> " + strings.TrimPrefix(pb[0], "size ")
	}
	for i := 1; i < max(len(pa), len(pb)); i++ {
		switch {
		case i >= len(pa):
			return "member added: " + pb[i]
		case i >= len(pb):
			return "member removed: " + pa[i]
		case pa[i] != pb[i]:
			return "member " + pa[i] + " -> " + pb[i]
		}
	}
	return "members differ"
}

func sortedKeys[V any](ms ...map[string]V) []string {
	set := map[string]bool{}
	for _, m := range ms {
		for k := range m {
			set[k] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func binding(b elf.SymBind) string {
	return strings.ToLower(strings.TrimPrefix(b.String(), "STB_"))
}

func function(e *entity, reason string) Function {
	return Function{Name: e.name, Section: e.sec.name, Binding: binding(e.sym.bind), Size: e.end - e.start, Reason: reason}
}

func (c *comparison) functions() {
	for _, name := range sortedKeys(c.pre.funcs, c.postFuncs) {
		a, b := c.pre.funcs[name], c.postFuncs[name]
		switch {
		case a == nil:
			f := function(b, "")
			f.Callers = c.post.referrer[b.sym.name]
			c.res.Added = append(c.res.Added, f)
			if isInit(b.sec.name) {
				c.problem(Problem{Kind: KindInit, Name: name, Section: b.sec.name,
					Reason: "new init code: init code runs once at boot or module load, so a livepatch never runs it"})
			}
		case b == nil:
			c.res.Removed = append(c.res.Removed, function(a, ""))
		default:
			why := diffImages(c.pre.entityImage(a), c.postImage(b), "code")
			if why == "" && isInit(a.sec.name) != isInit(b.sec.name) {
				why = fmt.Sprintf("moved from %s to %s", a.sec.name, b.sec.name)
			}
			if why == "" {
				continue
			}
			c.changed[name] = true
			c.res.Changed = append(c.res.Changed, function(b, why))
			if isInit(a.sec.name) || isInit(b.sec.name) {
				c.problem(Problem{Kind: KindInit, Name: name, Section: b.sec.name,
					Reason: "init code changed (" + why + "): it ran at boot or module load and was freed, so patching it changes nothing"})
			}
		}
	}
}

func sectionName(e *entity) string {
	if e.sec == nil {
		return "COMMON"
	}
	return e.sec.name
}

func writable(e *entity) bool { return e.sec == nil || e.sec.flags&elf.SHF_WRITE != 0 }

func (c *comparison) variables() {
	for _, name := range sortedKeys(c.pre.data, c.postData) {
		a, b := c.pre.data[name], c.postData[name]
		if b == nil {
			// Removed: the kernel keeps it, and no new code uses it.
			continue
		}
		kind := KindData
		if isInit(sectionName(b)) || a != nil && isInit(sectionName(a)) {
			kind = KindInit
		}
		p := Problem{Kind: kind, Name: name, Section: sectionName(b)}
		if a == nil {
			if kind == KindInit {
				p.Reason = fmt.Sprintf("new init variable (%d bytes): init data was used at boot or module load and freed", b.end-b.start)
				c.problem(p)
				continue
			}
			if b.sec == nil {
				p.Reason = fmt.Sprintf("new common variable (%d bytes): it has no section of its own to carry", b.end-b.start)
				c.problem(p)
				continue
			}
			// A read-only one holds no state: a copy reads the same as
			// the kernel's, whatever its number.
			if base, ok := localStaticBase(strings.TrimRight(name, "'")); ok && !onceFlags[base] && writable(b) {
				if other := c.numberedLike(base); other != "" {
					p.Reason = fmt.Sprintf("new function-local static beside %s of the same name: gcc numbers them in order, so the numbering may have shifted and the unpatched code's variable may now carry this name; refused rather than guessed", other)
					c.problem(p)
					continue
				}
			}
			// No code of the kernel knows it: only this unit's changed
			// and added functions refer to it, and the patch module can
			// hold its only copy.
			c.res.AddedData = append(c.res.AddedData, function(b, ""))
			continue
		}
		why := diffImages(c.pre.entityImage(a), c.postImage(b), "initial value")
		if why != "" && c.unpairedConstant(name, a, b) {
			// Two constants that only share gcc's number: Post's is new,
			// and the code that uses it carries its copy.
			c.res.AddedData = append(c.res.AddedData, function(b, ""))
			continue
		}
		switch {
		case why != "":
		case writable(a) && !writable(b):
			why = "now read-only"
		case !writable(a) && writable(b):
			why = "now writable"
		case a.sym.typ != b.sym.typ:
			why = fmt.Sprintf("type %v -> %v", a.sym.typ, b.sym.typ)
		default:
			continue
		}
		if kind == KindData && c.freshOnceFlag(name, b, why) {
			continue
		}
		var hint string
		if kind == KindData {
			var carried bool
			if carried, hint = c.carriedConstant(name, a, b, why); carried {
				continue
			}
		}
		switch {
		case kind == KindInit:
			p.Reason = why + ": init data was used at boot or module load and freed"
		case writable(b):
			p.Reason = why + ": the kernel keeps the variable it has, with its current value, so the new initial value never takes effect"
		default:
			p.Reason = why + ": functions that are not patched keep reading the kernel's copy" + hint
		}
		c.problem(p)
	}
}

func groupSections(o *Object, cl class) map[string][]*section {
	m := map[string][]*section{}
	for _, s := range o.sections {
		if s.class == cl {
			m[s.name] = append(m[s.name], s)
		}
	}
	return m
}

func (c *comparison) specialSections() {
	as, bs := groupSections(c.pre, classSpecial), groupSections(c.post, classSpecial)
	exports, gone := c.addedExports(as, bs), c.removedExports(as, bs)
	for _, name := range sortedKeys(as, bs) {
		a, b := as[name], bs[name]
		if exports[name] != "" || gone[name] != "" || name == kstrtabSection && c.onlyNewExportStrings(a, b) {
			continue
		}
		if t, ok := entryTables[name]; ok {
			if c.entryTable(name, t, a, b) {
				continue
			}
		}
		if name == dyndbgSection && c.descriptors(a, b) {
			continue
		}
		if name == altSection && c.alternatives(a, b) {
			continue
		}
		var why string
		switch {
		case len(a) == 0:
			why = "section added"
		case len(b) == 0:
			why = "section removed"
		case len(a) != len(b):
			why = fmt.Sprintf("%d sections of this name, now %d", len(a), len(b))
		default:
			for i := range a {
				ia := c.pre.image(a[i], 0, a[i].size, storedTarget)
				ib := c.post.image(b[i], 0, b[i].size, c.postTarget)
				if why = diffImages(ia, ib, "contents"); why != "" {
					break
				}
			}
		}
		if why == "" {
			continue
		}
		s := a
		if len(b) > 0 {
			s = b
		}
		c.problem(Problem{Kind: KindSection, Name: name, Reason: why + ": " + specialReason(s[0])})
	}
}

// loose returns the code of a section outside any function symbol,
// leaving out padding: runs without relocations that are shorter than the
// section's alignment (at least 16; alignment padding, which may be
// multi-byte NOPs) or are all single-byte NOP, int3 or zero fill (such as
// the NOPs -fpatchable-function-entry puts before each function).
func (o *Object) loose(s *section, targetOf func(*reloc) string) []image {
	var out []image
	piece := func(start, end uint64) {
		if start >= end {
			return
		}
		if len(s.relocsIn(start, end)) == 0 && (end-start < max(16, s.align) || isFill(s.data[start:end])) {
			return
		}
		out = append(out, o.image(s, start, end, targetOf))
	}
	at := uint64(0)
	for _, e := range s.funcs {
		piece(at, e.start)
		at = max(at, e.end)
	}
	piece(at, s.size)
	return out
}

func isFill(b []byte) bool {
	for _, c := range b {
		if c != 0x90 && c != 0xcc && c != 0 {
			return false
		}
	}
	return true
}

func (c *comparison) looseCode() {
	as, bs := groupSections(c.pre, classCode), groupSections(c.post, classCode)
	for _, name := range sortedKeys(as, bs) {
		var la, lb []image
		for _, s := range as[name] {
			la = append(la, c.pre.loose(s, storedTarget)...)
		}
		for _, s := range bs[name] {
			lb = append(lb, c.post.loose(s, c.postTarget)...)
		}
		why := ""
		if len(la) != len(lb) {
			why = fmt.Sprintf("%d runs of code outside any function, now %d", len(la), len(lb))
		} else {
			for i := range la {
				if why = diffImages(la[i], lb[i], "code"); why != "" {
					break
				}
			}
		}
		if why != "" {
			c.problem(Problem{Kind: KindSection, Name: name,
				Reason: why + ": code outside any function symbol changed, and objdiff cannot tell which function it belongs to"})
		}
	}
}

// signatures refuses a changed function whose prototype changed, unless
// no caller can reach the new code with the old arguments (directCalls).
func (c *comparison) signatures() {
	for i, f := range c.res.Changed {
		a, b := c.pre.debug.sigs[f.Name], c.post.debug.sigs[f.Name]
		if a == "" || b == "" || a == b {
			continue
		}
		why, _ := c.directCalls(f.Name)
		if why == "" {
			c.res.Notes = append(c.res.Notes, fmt.Sprintf("%s: prototype %s -> %s, accepted: it is static, only direct calls reach it, "+
				"and every function that calls it, before and after, is replaced with it", f.Name, a, b))
			continue
		}
		if abi := c.pre.debug.abis[f.Name]; abi != "" && !strings.Contains(abi, "?") && abi == c.post.debug.abis[f.Name] {
			// Only a qualifier, a typedef or the signedness of a type of
			// 4 bytes or more changed: a caller compiled against either
			// prototype passes the same bits in the same registers and
			// reads the result from the same one. A caller whose code
			// the new prototype changes is a unit compiled before and
			// after (every reader of a changed header is), and replaced.
			c.res.Notes = append(c.res.Notes, fmt.Sprintf("%s: prototype %s -> %s, accepted: every parameter and the result keep their size "+
				"and register class (%s), so a caller that is not patched passes the same bits and reads the same register", f.Name, a, b, abi))
			continue
		}
		fork := c.forkable(f.Name)
		if fork == "" {
			f := &c.res.Changed[i]
			f.Forked, f.Private, f.Exposed = true, false, ""
			c.res.Notes = append(c.res.Notes, fmt.Sprintf("%s: prototype %s -> %s, carried as a new function: every call to it after the patch "+
				"is a direct call from a function the bundle replaces or adds, which calls the bundle's copy; the kernel's copy stays as it is "+
				"for code the bundle leaves in place (%s), which keeps passing the old arguments to it and keeps its old behaviour", f.Name, a, b, why))
			continue
		}
		c.problem(Problem{Kind: KindSignature, Name: f.Name, Section: f.Section,
			Reason: fmt.Sprintf("prototype %s -> %s: callers that are not patched, in this object or others, would pass the old arguments or read the old result (%s); "+
				"nor can it be carried as a new function beside the kernel's: after: %s", a, b, why, fork)})
	}
}

// forkable returns "" when a changed function can be carried as a new
// function of the bundle, beside the kernel's copy instead of in its
// place (Function.Forked), and says why not otherwise. That takes, in
// Post only, what directCalls takes of Pre and Post: every reference to
// it is a direct call at its entry, from a function the patch replaces
// or adds (not a tail call: the caller's frame must stay on the stack
// while the copy runs, as for Private), apart from its own export entry.
// The kernel's copy is never redirected, so its callers in Pre, and in
// objects the patch does not reach, keep calling it with the arguments
// it was compiled for.
func (c *comparison) forkable(name string) string {
	b := c.postFuncs[name]
	if b == nil {
		return "it is not a function of both objects"
	}
	why, tail := callsTo(c.post, b, c.postReplaced, c.opts.InitRan)
	if why == "" && tail != "" {
		why = tail + tailToCopy
	}
	return why
}

// baseName strips the suffix GCC gives clones and parts of a function
// (helper.isra.0, helper.cold), which DWARF names by the source name.
func baseName(name string) string {
	if i := strings.IndexByte(name, '.'); i > 0 {
		return name[:i]
	}
	return name
}

// symbolsOf returns the function symbols of o whose source name is name.
func symbolsOf(o *Object, name string) []string { return o.byBase[name] }

// inlines finds functions whose code is inlined into changed functions
// and differs there, and functions that became or stopped being inlined.
// It returns, for each changed function, the inline functions whose
// copies in it differ.
func (c *comparison) inlines() map[string]map[string]bool {
	copies := map[string]map[string]bool{}
	pre, post := c.pre.debug, c.post.debug
	names := map[string]bool{}
	for n := range pre.inlined {
		names[n] = true
	}
	for n := range post.inlined {
		names[n] = true
	}
	for _, f := range c.res.Removed {
		names[baseName(f.Name)] = true
	}
	for _, f := range c.res.Added {
		names[baseName(f.Name)] = true
	}
	for _, x := range slices.Sorted(maps.Keys(names)) {
		callers := map[string]bool{}
		differs := false
		for _, caller := range sortedKeys(pre.inlined[x], post.inlined[x]) {
			if !c.changed[caller] {
				continue
			}
			callers[caller] = true
			if !c.sameCopies(pre.inlined[x][caller], post.inlined[x][caller]) {
				differs = true
				if copies[caller] == nil {
					copies[caller] = map[string]bool{}
				}
				copies[caller][x] = true
			}
		}
		symPre, symPost := symbolsOf(c.pre, x), symbolsOf(c.post, x)
		// A function with a symbol on one side only and inlined copies on
		// the other: its callers there stand in for it.
		if len(symPre) > 0 && len(symPost) == 0 && (len(post.inlined[x]) > 0 || post.abstract[x]) {
			differs = true
			c.addChangedReferrers(callers, c.pre, symPre)
		}
		if len(symPre) == 0 && len(symPost) > 0 && (len(pre.inlined[x]) > 0 || pre.abstract[x]) {
			differs = true
			c.addChangedReferrers(callers, c.post, symPost)
		}
		if !differs || len(callers) == 0 {
			continue
		}
		list := slices.Sorted(maps.Keys(callers))
		in := strings.Join(list, ", ")
		var why string
		switch {
		case len(symPre) > 0 && len(symPost) > 0:
			why = fmt.Sprintf("also inlined into %s, where its copies changed: calls to %s reach the patched function, but the inlined copies change only if those callers are patched too", in, x)
		case len(symPre) > 0:
			why = fmt.Sprintf("no longer a function of its own: it was inlined into %s, which must all be patched together", in)
		case len(symPost) > 0:
			why = fmt.Sprintf("was inlined into %s and is now a function of its own: those callers must all be patched together", in)
		default:
			why = fmt.Sprintf("inline function changed: its code lives only in its callers %s, which must all be patched together", in)
		}
		c.problem(Problem{Kind: KindInlined, Name: x, Callers: list,
			Reason: why + "; copies inlined into other objects (from a header) are not in this diff"})
	}
	return copies
}

func (c *comparison) addChangedReferrers(set map[string]bool, o *Object, syms []string) {
	for _, s := range syms {
		for _, r := range o.referrer[o.funcs[s].sym.name] {
			if c.changed[r] {
				set[r] = true
			}
		}
	}
}

// sameCopies compares the code of an inline function's copies in one
// caller.
func (c *comparison) sameCopies(a, b []span) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		ia := c.pre.image(a[i].sec, a[i].start, a[i].end, storedTarget)
		ib := c.post.image(b[i].sec, b[i].start, b[i].end, c.postTarget)
		if diffImages(ia, ib, "code") != "" {
			return false
		}
	}
	return true
}

// vanished is the check left without debug info: a function gone from
// Post whose callers changed may have been inlined into them.
func (c *comparison) vanished() {
	for _, f := range c.res.Removed {
		a := c.pre.funcs[f.Name]
		var callers []string
		for _, r := range c.pre.referrer[a.sym.name] {
			if c.changed[r] {
				callers = append(callers, r)
			}
		}
		if len(callers) == 0 {
			continue
		}
		c.problem(Problem{Kind: KindInlined, Name: f.Name, Section: f.Section, Callers: callers,
			Reason: fmt.Sprintf("gone from %s while its callers %s changed: it was removed or inlined into them, and without debug info (-g) objdiff cannot tell which; an inlined copy must be patched in every caller, in every object", c.post.name, strings.Join(callers, ", "))})
	}
}

// diffImages describes the first difference between two images, or
// returns "" if they are the same. noun names the bytes ("code").
func diffImages(a, b image, noun string) string {
	// First differing relocation.
	relAt, relWhy := ^uint64(0), ""
	for i := 0; i < max(len(a.relocs), len(b.relocs)); i++ {
		switch {
		case i >= len(a.relocs):
			relAt, relWhy = b.relocs[i].off, fmt.Sprintf("new reference at +%#x to %s", b.relocs[i].off, b.relocs[i].target)
		case i >= len(b.relocs):
			relAt, relWhy = a.relocs[i].off, fmt.Sprintf("reference at +%#x to %s dropped", a.relocs[i].off, a.relocs[i].target)
		case a.relocs[i] != b.relocs[i]:
			ra, rb := a.relocs[i], b.relocs[i]
			relAt = min(ra.off, rb.off)
			if ra.off == rb.off {
				relWhy = fmt.Sprintf("reference at +%#x: %s -> %s", ra.off, ra.target, rb.target)
			} else {
				relWhy = fmt.Sprintf("references at +%#x (%s) and +%#x (%s) differ", ra.off, ra.target, rb.off, rb.target)
			}
		default:
			continue
		}
		break
	}
	// First differing byte; nil bytes are zeros.
	byteAt := ^uint64(0)
	n := min(a.size, b.size)
	at := func(img image, i uint64) byte {
		if img.bytes == nil {
			return 0
		}
		return img.bytes[i]
	}
	if a.bytes != nil || b.bytes != nil {
		for i := range n {
			if at(a, i) != at(b, i) {
				byteAt = i
				break
			}
		}
	}
	if relAt == ^uint64(0) && byteAt == ^uint64(0) && a.size == b.size {
		return ""
	}
	var why string
	switch {
	case relAt <= byteAt && relAt != ^uint64(0):
		why = relWhy
	case byteAt != ^uint64(0):
		why = fmt.Sprintf("%s differs at +%#x", noun, byteAt)
	}
	if a.size != b.size {
		size := fmt.Sprintf("size %d -> %d bytes", a.size, b.size)
		if why == "" {
			return size
		}
		return size + ", " + why
	}
	return why
}

// onceFlags are the function-local statics kernel macros declare to act
// once (WARN_ONCE's __already_done, RCU_LOCKDEP_WARN's __warned,
// __print_once) or to limit a message's rate (printk_ratelimited's and
// the pr_*_ratelimited family's _rs): the generator gives the new code a
// fresh copy of every one it uses (klpgen copyOnceFlag), so a new one
// beside others of its name is no guess about gcc's numbering, and a
// renumbered one does not make the code that uses it look changed.
var onceFlags = map[string]bool{"__already_done": true, "__warned": true, "__print_once": true, "_rs": true}

// localStaticBase splits a name gcc gives a function-local static
// ("count.0", "__already_done.12") into its base ("count").
func localStaticBase(name string) (string, bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 || i == len(name)-1 {
		return "", false
	}
	for _, r := range name[i+1:] {
		if r < '0' || r > '9' {
			return "", false
		}
	}
	return name[:i], true
}

// numberedLike returns a variable of Pre that gcc numbered under the same
// base name and that no static of Post was paired with, or "".
func (c *comparison) numberedLike(base string) string {
	for _, name := range sortedKeys(c.pre.data) {
		if b, ok := localStaticBase(name); ok && b == base && !c.localMatched[name] {
			return name
		}
	}
	return ""
}

// entryTable describes a kernel table of fixed-size entries, each about
// one instruction, that the module loader registers for a module's own
// code: the entries of a replaced or added function go into the patch
// module with it (package klpgen copies them). Key is the offset of the
// entry's relocation to its instruction, which says whose entry it is;
// Kind is the part of an entry that says what it does (the rest are the
// addresses and, for a bug entry, the file and line).
type entryTable struct {
	Size, Key uint64
	Kind      [2]uint64 // [start, end) within an entry
	What      string
}

// entryTables are the tables objdiff splits by function (x86-64, Linux
// 6.1; lib/bug.c and kernel/module/main.c register a module's own).
var entryTables = map[string]entryTable{
	// struct bug_entry with relative pointers and BUGVERBOSE: bug_addr,
	// file, line (2 bytes), flags (2 bytes).
	"__bug_table": {Size: 12, Key: 0, Kind: [2]uint64{10, 12}, What: "BUG/WARN entries"},
	// struct exception_table_entry: insn, fixup, data (type and registers).
	"__ex_table": {Size: 12, Key: 0, Kind: [2]uint64{8, 12}, What: "exception table entries"},
	// struct jump_entry: code, target, key (all relocated): a static key's
	// jump (a tracepoint, a static branch).
	"__jump_table": {Size: 16, Key: 0, What: "static-key jump entries"},
	// struct static_call_site: addr, key (both relocated).
	".static_call_sites": {Size: 8, Key: 0, What: "static call sites"},
	// struct paravirt_patch_site as _paravirt_alt writes it: instr (a
	// 64-bit address), type, len, clobbers, aligned to 8. apply_paravirt
	// rewrites a module's own sites when it loads.
	".parainstructions": {Size: 16, Key: 0, Kind: [2]uint64{8, 16}, What: "paravirt patch sites"},
}

// entryTable compares a table of fixed-size entries function by function:
// the entries of changed and added functions go with their code; those of
// unchanged functions must say the same as before (their instructions are
// the kernel's, and so are their entries), whatever lines they name. It
// returns false when the sections do not have the table's layout, for
// the caller to compare them whole.
func (c *comparison) entryTable(name string, t entryTable, a, b []*section) bool {
	pre, ok := entriesByFunction(a, t, func(ref string) string { return ref })
	if !ok {
		return false
	}
	post, ok := entriesByFunction(b, t, c.postRef)
	if !ok {
		return false
	}
	for _, fn := range sortedKeys(pre, post) {
		if fn != "" && (c.changed[fn] || c.pre.funcs[fn] == nil || c.postFuncs[fn] == nil) {
			// Replaced or added code: its entries go with it. Removed
			// code: the kernel keeps it, and its entries.
			continue
		}
		if !slices.Equal(pre[fn], post[fn]) {
			who := "function " + fn
			if fn == "" {
				who = "code outside any function"
			}
			c.problem(Problem{Kind: KindSection, Name: name, Reason: fmt.Sprintf(
				"%s of %s changed (%d entries, now %d) while its code did not: the kernel keeps its own entries for code that is not replaced", t.What, who, len(pre[fn]), len(post[fn]))})
		}
	}
	return true
}

// entriesByFunction splits the entries of a table's sections by the
// function their instruction is in, keeping each entry's kind bytes.
func entriesByFunction(secs []*section, t entryTable, ref func(string) string) (map[string][]string, bool) {
	out := map[string][]string{}
	for _, s := range secs {
		if s.data == nil || s.size%t.Size != 0 {
			return nil, false
		}
		keys := map[uint64]string{}
		for _, r := range s.relocs {
			if r.off%t.Size == t.Key {
				keys[r.off/t.Size] = ref(r.ref)
			}
		}
		for i := uint64(0); i < s.size/t.Size; i++ {
			fn, ok := keys[i]
			if !ok {
				return nil, false
			}
			e := s.data[i*t.Size : (i+1)*t.Size]
			out[fn] = append(out[fn], string(e[t.Kind[0]:t.Kind[1]]))
		}
	}
	return out, true
}
