package objdiff

import (
	"fmt"
	"strings"
)

// Dynamic debug descriptors (Linux 6.1, include/linux/dynamic_debug.h).
// Every pr_debug, dev_dbg and the like defines a function-local
// static struct _ddebug __UNIQUE_ID_ddebugN in section __dyndbg: pointers
// to the module name, function name, file name and format, a 32-bit
// word of lineno:18, class_id:6 and flags:8, and, with CONFIG_JUMP_LABEL,
// the static key the call site's jump entry names. The module loader
// registers a module's own descriptors when it loads (kernel/module/main.c
// dynamic_debug_setup, which calls lib/dynamic_debug.c ddebug_add_module
// under the module's name) and removes them when it unloads.
//
// A descriptor belongs to the code that refers to it (the call of
// __dynamic_pr_debug and friends, and the jump entry of the call site).
// The descriptors of changed and added functions travel with their code:
// package klpgen copies them into the patch module's own __dyndbg. Those
// of other functions stay the kernel's, and must say the same as before;
// the line number aside, which only the control file prints and `line N`
// queries match, so a fix that moves a pr_debug further down the file
// changes nothing a livepatch carries. Their other fields are what the
// site prints and how it is selected: a change there with unchanged code
// is refused.

// dyndbgSection is the section the kernel's descriptors are in.
const dyndbgSection = "__dyndbg"

// ddebugLine is the offset of the word whose low 18 bits are the line
// number (after four pointers; bit-fields fill from the low bits on
// x86-64).
const ddebugLine = 32

// maskLine zeroes a descriptor's line number in its image.
func maskLine(img *image) {
	if img.bytes == nil || len(img.bytes) < ddebugLine+4 {
		return
	}
	img.bytes[ddebugLine] = 0
	img.bytes[ddebugLine+1] = 0
	img.bytes[ddebugLine+2] &^= 0x03
}

// describedBy reports whether secs are arrays of descriptors as the
// kernel's macros emit them: object symbols of one size (at least the
// four pointers and the flags word, a multiple of 8) laid end to end,
// covering every byte and every relocation of the sections.
func describedBy(o *Object, secs []*section) bool {
	size := uint64(0)
	for _, s := range secs {
		if s.data == nil {
			return false
		}
		at := uint64(0)
		for _, n := range s.named {
			e := o.descs[n.name]
			if e == nil || e.sec != s || n.value != at {
				return false
			}
			if size == 0 {
				size = n.size
			}
			if n.size != size || size < ddebugLine+8 || size%8 != 0 {
				return false
			}
			at += n.size
		}
		if at != s.size {
			return false
		}
	}
	return true
}

// descriptors compares the __dyndbg sections descriptor by descriptor,
// by the function that refers to each. It returns false when the
// sections do not have the layout, for the caller to compare them whole.
func (c *comparison) descriptors(a, b []*section) bool {
	if !describedBy(c.pre, a) || !describedBy(c.post, b) {
		return false
	}
	for _, name := range sortedKeys(c.pre.descs, c.postDescs) {
		da, db := c.pre.descs[name], c.postDescs[name]
		if db == nil {
			// Removed: the kernel keeps it, with the code that uses it.
			continue
		}
		var users []string
		carried := false
		for _, u := range c.post.referrer[db.sym.name] {
			if c.post.funcs[u] == nil {
				continue
			}
			k := c.postRef(u)
			users = append(users, k)
			if c.changed[k] || c.pre.funcs[k] == nil {
				carried = true
			}
		}
		if carried {
			// New code: the descriptor goes into the patch module.
			continue
		}
		who := "no function"
		if len(users) > 0 {
			who = "function " + strings.Join(users, ", ")
		}
		var why string
		switch {
		case da == nil && len(users) == 0:
			// Nothing runs it: nothing to carry.
			continue
		case da == nil:
			why = "new descriptor"
		default:
			why = diffImages(c.pre.entityImage(da), c.postImage(db), "contents")
		}
		if why == "" {
			continue
		}
		c.problem(Problem{Kind: KindSection, Name: dyndbgSection, Reason: fmt.Sprintf(
			"dynamic debug descriptor %s of %s changed (%s, line number aside) while its code did not: the kernel keeps its own descriptor for code that is not replaced, so what it prints or how it is selected would not change", name, who, why)})
	}
	return true
}
