package objdiff

import "strings"

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
// exactly one static of that base name too, they are the same variable.
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
			if len(mine) != 1 || len(theirs) != 1 {
				continue
			}
			if match != "" && match != theirs[0] {
				agreed = false
			}
			match = theirs[0]
		}
		if match == "" || !agreed || taken[match] {
			continue
		}
		taken[match] = true
		c.localMatched[match] = true
		c.rename[name] = match
	}
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
