package objdiff

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The kernel's __UNIQUE_ID(prefix) macro (include/linux/compiler.h)
// names a symbol "__UNIQUE_ID_" + prefix + __COUNTER__, and gcc's
// __COUNTER__ counts every use in the unit so far. A fix that adds or
// removes one use (a pr_debug, a BUILD_BUG_ON, an __ADDRESSABLE) renumbers
// every later one: module_init's __ADDRESSABLE(init_module), the
// modinfo strings, dynamic debug descriptors. Matched by exact name, such
// a symbol would look new in Post and removed from Pre. Instead, objdiff
// matches them by stem (the name without the number) and content.

// uniquePrefix starts every name __UNIQUE_ID makes. btfIDPrefix starts
// every symbol BTF_ID (include/linux/btf_ids.h) makes: it pastes
// __COUNTER__ after the kind and name
// (__BTF_ID__struct__bpf_bloom_filter__313206), so a fix that adds one
// use of __COUNTER__ before it renumbers it the same way.
const (
	uniquePrefix = "__UNIQUE_ID_"
	btfIDPrefix  = "__BTF_ID__"
)

// maxUniqueGroup bounds the symbols of one stem matched by content.
const maxUniqueGroup = 256

// uniqueStem splits a __UNIQUE_ID name into its stem and counter. A
// function-local one carries gcc's number of local statics too
// (__UNIQUE_ID_ddebug676.12), which shifts as well: the stem then ends
// in ".".
func uniqueStem(name string) (stem string, n int, ok bool) {
	prefix := uniquePrefix
	if strings.HasPrefix(name, btfIDPrefix) {
		prefix = btfIDPrefix
	}
	if !strings.HasPrefix(name, prefix) {
		return "", 0, false
	}
	local := ""
	if base, ok := localStaticBase(name); ok {
		name, local = base, "."
	}
	defer func() { stem += local }()
	stem = strings.TrimRight(name, "0123456789")
	if len(stem) == len(name) || len(stem) == len(prefix) {
		return "", 0, false
	}
	n, err := strconv.Atoi(name[len(stem):])
	if err != nil {
		return "", 0, false
	}
	return stem, n, true
}

// uniqueGroup is what must agree for two __UNIQUE_ID symbols to be the
// same: stem, function or variable, and the kind of section (init,
// writable).
func uniqueGroup(e *entity) (string, bool) {
	stem, _, ok := uniqueStem(e.name)
	if !ok {
		return "", false
	}
	return fmt.Sprintf("%s|fn=%t|init=%t|writable=%t", stem, e.fn, isInit(sectionName(e)), writable(e)), true
}

// matchUnique pairs the __UNIQUE_ID entities of Post with those of Pre.
// First by content, in rounds (a descriptor that points at another
// renumbered symbol matches once that one is matched): an entity of
// Post whose image, references renamed, equals one of Pre is the same,
// under another number. Those left over in a group are paired in
// counter order (which is source order) when both sides have as many,
// and then compared as usual, so a real change under a new number is
// reported. A group with unequal leftovers on both sides is ambiguous:
// its leftovers of Post are refused rather than guessed.
//
// It sets c.rename (Post name -> Pre name) and the views c.postFuncs
// and c.postData, Post's entities keyed by the name of their match.
func (c *comparison) matchUnique() {
	c.rename = map[string]string{}
	pre, post := uniqueGroups(c.pre), uniqueGroups(c.post)
	// Matching compares every pair of a group, in rounds: a group larger
	// than a unit makes (a crafted object) keeps exact names.
	for k := range post {
		if len(post[k]) > maxUniqueGroup || len(pre[k]) > maxUniqueGroup {
			delete(post, k)
			delete(pre, k)
		}
	}
	c.matchBTFIDs()
	used := c.matchUniqueByContent(pre, post)
	ambiguous := c.pairUniqueLeftovers(pre, post, used)
	c.matchLocalStatics()
	c.postFuncs, c.postData, c.postDescs = c.renamed(c.post.funcs, ambiguous), c.renamed(c.post.data, ambiguous), c.renamed(c.post.descs, ambiguous)
	for name, to := range c.rename {
		if name == to {
			delete(c.rename, name)
		}
	}
}

// uniqueGroups groups an object's __UNIQUE_ID functions, variables and
// dynamic debug descriptors by stem, kind and section, each group in
// counter order.
func uniqueGroups(o *Object) map[string][]*entity {
	g := map[string][]*entity{}
	for _, m := range []map[string]*entity{o.funcs, o.data, o.descs} {
		for _, name := range sortedKeys(m) {
			if k, ok := uniqueGroup(m[name]); ok {
				g[k] = append(g[k], m[name])
			}
		}
	}
	for _, es := range g {
		slices.SortFunc(es, func(a, b *entity) int {
			_, na, _ := uniqueStem(a.name)
			_, nb, _ := uniqueStem(b.name)
			return na - nb
		})
	}
	return g
}

// matchUniqueByContent pairs each Post symbol of a group with a Pre
// symbol of equal contents (its own name first), in rounds: one that
// refers to another renumbered symbol matches once that one has. It
// returns the Pre symbols taken.
func (c *comparison) matchUniqueByContent(pre, post map[string][]*entity) map[*entity]bool {
	used := map[*entity]bool{}
	for round := 0; round < 8; round++ {
		progress := false
		for _, k := range sortedKeys(post) {
			for _, b := range post[k] {
				if _, done := c.rename[b.name]; done {
					continue
				}
				var match *entity
				for _, a := range pre[k] {
					if used[a] || diffImages(c.pre.entityImage(a), c.postImage(b), "") != "" {
						continue
					}
					if match == nil || a.name == b.name {
						match = a
					}
				}
				if match != nil {
					used[match] = true
					c.rename[b.name] = match.name
					progress = true
				}
			}
		}
		if !progress {
			break
		}
	}
	return used
}

// pairUniqueLeftovers pairs what content left of each group in counter
// order when both sides have as many, and refuses the Post symbols of a
// group whose sides differ in number. It returns those refused.
func (c *comparison) pairUniqueLeftovers(pre, post map[string][]*entity, used map[*entity]bool) map[string]bool {
	ambiguous := map[string]bool{}
	for _, k := range sortedKeys(post) {
		var la, lb []*entity
		for _, a := range pre[k] {
			if !used[a] {
				la = append(la, a)
			}
		}
		for _, b := range post[k] {
			if _, done := c.rename[b.name]; !done {
				lb = append(lb, b)
			}
		}
		switch {
		case len(la) == 0 || len(lb) == 0:
			// New (Post only) or removed (Pre only): compared as such.
		case len(la) == len(lb):
			for i := range lb {
				c.rename[lb[i].name] = la[i].name
			}
		default:
			for _, b := range lb {
				ambiguous[b.name] = true
				c.problem(Problem{Kind: KindData, Name: b.name, Section: sectionName(b), Reason: fmt.Sprintf(
					"renumbered __UNIQUE_ID symbol: %d symbols of its stem differ from the kernel's %d, and which is which cannot be told; refused rather than guessed", len(lb), len(la))})
			}
		}
	}
	return ambiguous
}

// renamed is a Post entity map under the names of the Pre symbols they
// matched; a symbol that kept its name but whose name a renumbered one
// took is kept under the name with primes appended, and the refused
// ones are left out.
func (c *comparison) renamed(m map[string]*entity, ambiguous map[string]bool) map[string]*entity {
	out := map[string]*entity{}
	for name, e := range m {
		if ambiguous[name] {
			continue
		}
		if to, ok := c.rename[name]; ok {
			out[to] = e
		}
	}
	for name, e := range m {
		if _, ok := c.rename[name]; ok || ambiguous[name] {
			continue
		}
		key := name
		for out[key] != nil {
			key += "'"
		}
		out[key] = e
	}
	return out
}

// postTarget is the target of a relocation of Post, a renumbered
// __UNIQUE_ID symbol named as its match in Pre.
func (c *comparison) postTarget(r *reloc) string {
	if to, ok := c.rename[r.ref]; ok && strings.HasPrefix(r.target, r.ref) {
		return to + r.target[len(r.ref):]
	}
	return r.target
}

// postRef is postTarget for the symbol a relocation resolved to.
func (c *comparison) postRef(ref string) string {
	if to, ok := c.rename[ref]; ok {
		return to
	}
	return ref
}

func (c *comparison) postImage(e *entity) image {
	return entityView(e, c.post.image(e.sec, e.start, e.end, c.postTarget))
}

// renumberedReferences refuses new code (changed and added functions,
// added variables) that refers to a renumbered __UNIQUE_ID symbol or
// function-local static: the patch module finds the kernel's symbols by
// name, and under the new number it would find another symbol, or none.
// A constant that refers to nothing (an error message's text) is carried
// as the module's own copy instead, which reads the same.
func (c *comparison) renumberedReferences() {
	if len(c.rename) == 0 {
		return
	}
	var carried []Function
	carried = append(carried, c.res.Changed...)
	carried = append(carried, c.res.Added...)
	carried = append(carried, c.res.AddedData...)
	for _, f := range carried {
		e := c.post.funcs[f.Name]
		if e == nil {
			e = c.post.data[f.Name]
		}
		if e == nil || e.sec == nil {
			continue
		}
		for _, r := range e.sec.relocsIn(e.start, e.end) {
			if c.post.descs[r.ref] != nil {
				// A descriptor goes into the patch module with the
				// code that uses it (dyndbg.go), never looked up.
				continue
			}
			if base, ok := localStaticBase(r.ref); ok && onceFlags[base] {
				// A once flag or ratelimit state: the new code gets a
				// fresh copy, never the kernel's looked up by name.
				continue
			}
			to, ok := c.rename[r.ref]
			if d := c.post.data[r.ref]; ok && d != nil && d.sec != nil && !writable(d) && len(d.sec.relocsIn(d.start, d.end)) == 0 {
				// A constant: the patch module carries its own copy,
				// which reads the same as the kernel's.
				if !slices.ContainsFunc(c.res.AddedData, func(a Function) bool { return a.Name == r.ref }) {
					c.res.AddedData = append(c.res.AddedData, function(d, ""))
				}
				continue
			}
			if ok {
				c.problem(Problem{Kind: KindData, Name: f.Name, Section: f.Section, Reason: fmt.Sprintf(
					"refers to %s, the kernel's %s under another number (gcc's count of __COUNTER__ or of function-local statics): the patch module would look it up by the new name", r.ref, to)})
				break
			}
		}
	}
}

// matchBTFIDs pairs the BTF_ID symbols of Post with those of Pre. They
// are not variables of the unit but slots of the .BTF_ids section that
// the kernel's link fills in (resolve_btfids), so they are matched by
// place: the symbol of a stem at the same offset of the same section,
// when the stem has as many symbols on both sides.
func (c *comparison) matchBTFIDs() {
	type slot struct {
		sec string
		off uint64
	}
	index := func(o *Object) map[string]map[slot]string {
		m := map[string]map[slot]string{}
		for i := range o.syms {
			sy := &o.syms[i]
			if !strings.HasPrefix(sy.name, btfIDPrefix) || sy.shndx == 0 || int(sy.shndx) >= len(o.sections) {
				continue
			}
			stem, _, ok := uniqueStem(sy.name)
			if !ok {
				continue
			}
			if m[stem] == nil {
				m[stem] = map[slot]string{}
			}
			m[stem][slot{o.sections[sy.shndx].name, sy.value}] = sy.name
		}
		return m
	}
	pre, post := index(c.pre), index(c.post)
	for stem, ps := range post {
		as := pre[stem]
		if len(as) != len(ps) {
			continue
		}
		pairs := map[string]string{}
		for at, name := range ps {
			old, ok := as[at]
			if !ok {
				pairs = nil
				break
			}
			pairs[name] = old
		}
		for name, old := range pairs {
			c.rename[name] = old
		}
	}
}
