package objdiff

import (
	"slices"
	"strconv"
	"strings"
)

// gcc names a function-local static after the variable and a number it
// counts across the unit ("count.1", "__key.66"): a fix that adds one
// before it (a spin_lock_init in a header's inline function is enough)
// renumbers every later one. Matched by exact name, the kernel's variable
// would look removed and the unit's new one added, and every function
// that refers to it changed.
//
// matchLocalStatics pairs them as kpatch does, by the function that
// refers to them: when a function of Post refers to exactly one static
// of a base name, and the function of the same name in Pre refers to
// exactly one static of that base name too, they are the same variable
// (statics without state, as many on each side, pair in order: twin).
// Every function of Post that refers to the static must agree on its
// match, and each static of Pre is taken once; anything else keeps its
// own name and is judged as before. A static of Post left unpaired is
// new, and carried as the patch's own, once every static of Pre of its
// base name is paired; else its number may be one gcc gave the kernel's
// variable, and it is refused (variables). A static paired under a new number
// is compared as the kernel's; carried code that refers to it is
// refused (renumberedReferences), for the patch module would look it up
// by the new name.
func (c *comparison) matchLocalStatics() {
	pre, post := localStaticRefs(c.pre), localStaticRefs(c.post)
	c.localMatched = map[string]bool{}
	taken := map[string]bool{}
	for _, to := range c.rename {
		taken[to] = true
	}
	for _, name := range sortedKeys(c.post.data) {
		base, ok := plainLocalStatic(name)
		if !ok {
			continue
		}
		if _, done := c.rename[name]; done {
			continue
		}
		match, agreed := "", true
		for _, f := range c.post.referrer[name] {
			mine := post[f][base]
			theirs := pre[c.postRef(f)][base]
			twin := c.twin(name, mine, theirs)
			if twin == "" {
				continue
			}
			if match != "" && match != twin {
				agreed = false
			}
			match = twin
		}
		if match == "" || !agreed || taken[match] {
			continue
		}
		taken[match] = true
		c.localMatched[match] = true
		c.rename[name] = match
	}
}

// twin returns which of theirs (Pre's statics of a base name one
// function refers to) is the twin of name among mine (Post's), or "":
// the one, when each side has one; else, when each side has as many and
// all of them hold no state (a lock class key without lockdep is empty,
// an error message read-only), the one at its place in gcc's numbering,
// which follows their order in the function.
func (c *comparison) twin(name string, mine, theirs []string) string {
	switch {
	case len(mine) == 1 && len(theirs) == 1:
		return theirs[0]
	case len(mine) != len(theirs):
		return ""
	}
	for _, n := range mine {
		if !stateless(c.post.data[n]) {
			return ""
		}
	}
	for _, n := range theirs {
		if !stateless(c.pre.data[n]) {
			return ""
		}
	}
	byNumber := func(names []string) []string {
		out := slices.Clone(names)
		slices.SortFunc(out, func(a, b string) int { return staticNumber(a) - staticNumber(b) })
		return out
	}
	return byNumber(theirs)[slices.Index(byNumber(mine), name)]
}

// stateless reports whether a variable holds no state a copy would
// lose: it is empty, or read-only.
func stateless(e *entity) bool {
	return e.end == e.start || e.sec != nil && !writable(e)
}

// unpairedConstant reports whether name is a read-only function-local
// static of Pre that no static of Post was paired with: one of Post
// under the same name only shares gcc's number with it.
func (c *comparison) unpairedConstant(name string, a, b *entity) bool {
	_, ok := plainLocalStatic(name)
	return ok && c.localMatched != nil && !c.localMatched[name] && a.sec != nil && b.sec != nil && !writable(a) && !writable(b)
}

// staticNumber is the number gcc gave a function-local static.
func staticNumber(name string) int {
	n, _ := strconv.Atoi(name[strings.LastIndexByte(name, '.')+1:])
	return n
}

// plainLocalStatic returns the base name of a function-local static
// that is not a __UNIQUE_ID or BTF_ID symbol (matchUnique pairs those).
func plainLocalStatic(name string) (string, bool) {
	if strings.HasPrefix(name, uniquePrefix) || strings.HasPrefix(name, btfIDPrefix) {
		return "", false
	}
	return localStaticBase(name)
}

// localStaticRefs maps each entity of o to the function-local statics it
// refers to, by base name.
func localStaticRefs(o *Object) map[string]map[string][]string {
	out := map[string]map[string][]string{}
	for _, name := range sortedKeys(o.data) {
		base, ok := plainLocalStatic(name)
		if !ok {
			continue
		}
		for _, f := range o.referrer[name] {
			if out[f] == nil {
				out[f] = map[string][]string{}
			}
			out[f][base] = append(out[f][base], name)
		}
	}
	return out
}
