package objdiff

import (
	"debug/elf"
	"fmt"
	"slices"
	"strings"
)

// A fix often changes a table that only its file's functions read: a
// netlink policy gains an attribute or a tighter range, a quirk list a
// device. The kernel's copy cannot be rewritten in place (it is read-only,
// and code that is not replaced keeps reading it), but when nothing other
// than functions of the unit refers to it, the whole set of its readers
// is known: replacing every one of them, with copies that read the
// module's copy of the new table, carries the change. The kernel's table
// is then read by nothing that runs after the transition.
//
// It is refused when anything else could hold its address: a global
// symbol (another unit may read it), a reference from data (an ops or
// family structure registered at load, which keeps pointing at the old
// table), a reader in init code (it ran, and may have stored the
// address), or a reference the comparison cannot place in a function.
// A table that holds the address of code, or of anything outside the
// unit, is refused too: it is an ops table, whose address the code that
// reads it typically stores in objects (a file, a dentry, a socket) that
// outlive the patch and keep calling through the old table.

// carriedConstant reports whether a changed read-only variable, a in Pre
// and b in Post, is carried as the module's copy with all its readers
// replaced, and if so marks them changed. If not, it says why when the
// reason is more than that unpatched code reads the kernel's copy.
func (c *comparison) carriedConstant(name string, a, b *entity, why string) (bool, string) {
	if a.sec == nil || b.sec == nil || writable(a) || writable(b) || isInit(a.sec.name) || isInit(b.sec.name) {
		return false, ""
	}
	if a.sym.bind != elf.STB_LOCAL || b.sym.bind != elf.STB_LOCAL {
		return false, "; it is global, so other units may read it too"
	}
	if holdsCode(c.pre, a) || holdsCode(c.post, b) {
		return false, "; it holds the addresses of functions or of other units' symbols, as an ops table does, and code stores such a table's address in objects (a file, a socket) that keep calling through the kernel's copy after the patch"
	}
	preReaders, ok := functionReaders(c.pre, a.sym.name)
	if !ok {
		return false, "; data or init code refers to it, and keeps the kernel's copy's address"
	}
	postReaders, ok := functionReaders(c.post, b.sym.name)
	if !ok || len(postReaders) == 0 {
		return false, "; data or init code refers to it, and keeps the kernel's copy's address"
	}
	// The readers of both sides, by their name in Pre where they were
	// renamed, and each one's entity in Post (a reader Post removed is
	// reached only from code that changed; one Post adds is new code).
	replace := c.unchangedReaders(postReaders)
	for _, r := range preReaders {
		if e := c.postFuncs[r]; e != nil && !c.changed[r] && !slices.Contains(replace, e) {
			replace = append(replace, e)
		}
	}
	c.replace(replace, fmt.Sprintf("reads %s, a constant the patch changes: replaced so that it reads the module's copy", b.sym.name))
	c.res.AddedData = append(c.res.AddedData, function(b, ""))
	c.res.Notes = append(c.res.Notes, fmt.Sprintf("%s: constant changed (%s), carried: only functions of this unit read it, and each is replaced with a copy that reads the module's copy of the new value", name, why))
	return true, ""
}

// freshOnceFlag reports whether a once flag or ratelimit state
// (onceFlags) whose initial value differs is carried. Such a state is
// never shared between functions: each replaced function gets a fresh
// copy in the module, with the new initial value, as kpatch does with
// its special statics. gcc numbers them in order, so Pre's and Post's of
// one name may belong to different functions, and the value seems to
// change; either way, the functions of this unit that refer to Post's
// are replaced, so that they use the fresh copy. Data or init code that
// refers to it keeps the kernel's, and stays refused.
func (c *comparison) freshOnceFlag(name string, b *entity, why string) bool {
	base, ok := localStaticBase(strings.TrimRight(name, "'"))
	if !ok || !onceFlags[base] || b.sec == nil || b.sym.bind != elf.STB_LOCAL || isInit(b.sec.name) {
		return false
	}
	readers, ok := functionReaders(c.post, b.sym.name)
	if !ok || len(readers) == 0 {
		return false
	}
	// A new or an already replaced reader gets the fresh copy anyway.
	c.replace(c.unchangedReaders(readers), fmt.Sprintf("uses %s, whose initial value the patch changes: replaced so that it uses a fresh copy", b.sym.name))
	c.res.Notes = append(c.res.Notes, fmt.Sprintf("%s: %s, carried: a once flag or ratelimit state is per function, and the module gives each function it replaces a fresh copy with the new value", name, why))
	return true
}

// unchangedReaders returns the entities of Post's functions named, by
// their Post names, that Pre has too and that are not replaced yet.
func (c *comparison) unchangedReaders(postNames []string) []*entity {
	var es []*entity
	for _, r := range postNames {
		pre := r
		if n, ok := c.rename[r]; ok {
			pre = n
		}
		if e := c.postFuncs[pre]; e != nil && c.pre.funcs[pre] != nil && !c.changed[pre] && !slices.Contains(es, e) {
			es = append(es, e)
		}
	}
	return es
}

// replace marks functions of Post changed, for the reason given.
func (c *comparison) replace(es []*entity, why string) {
	for _, e := range es {
		c.changed[c.matchName(e)] = true
		c.res.Changed = append(c.res.Changed, function(e, why))
	}
}

// matchName is the name an entity of Post is compared under: its own,
// or that of the Pre entity it was matched with.
func (c *comparison) matchName(e *entity) string {
	if n, ok := c.rename[e.name]; ok {
		return n
	}
	return e.name
}

// functionReaders returns the functions of o that refer to the symbol
// sym, and false if anything else refers to it: a variable, a table
// section, code outside any function, or an init function.
func functionReaders(o *Object, sym string) ([]string, bool) {
	var readers []string
	for _, s := range o.sections {
		if s.class == classMeta {
			continue
		}
		for i := range s.relocs {
			r := &s.relocs[i]
			if r.ref != sym {
				continue
			}
			f := o.functionAt(s, r.off)
			if f == nil || isInit(s.name) {
				return nil, false
			}
			if !slices.Contains(readers, f.name) {
				readers = append(readers, f.name)
			}
		}
	}
	slices.Sort(readers)
	return readers, true
}

// functionAt returns the function of o whose code holds offset off of
// section s, or nil.
func (o *Object) functionAt(s *section, off uint64) *entity {
	for _, e := range o.funcs {
		if e.sec == s && e.start <= off && off < e.end {
			return e
		}
	}
	return nil
}

// holdsCode reports whether a variable of o holds the address of code
// or of a symbol o does not define.
func holdsCode(o *Object, e *entity) bool {
	for _, r := range e.sec.relocsIn(e.start, e.end) {
		if int(r.sym) >= len(o.syms) {
			return true
		}
		s := &o.syms[r.sym]
		switch {
		case r.sym == 0:
		case s.shndx == elf.SHN_UNDEF || s.shndx >= elf.SHN_LORESERVE:
			return true
		case int(s.shndx) < len(o.sections) && o.sections[s.shndx].class == classCode:
			return true
		}
	}
	return false
}
