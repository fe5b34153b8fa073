package klpgen

import "strings"

// sectionClass says what the generator does with a section of the
// patched object that it does not copy but that refers to code it copies.
type sectionClass int

const (
	// classOrdinary: code or data that keeps referring to the original
	// function in the kernel (callers, operation tables, initcalls,
	// export entries). The original is redirected by livepatch, so these
	// references stay right.
	classOrdinary sectionClass = iota
	// classDrop: metadata about code that the new copy can go without.
	classDrop
	// classORC: ORC unwind tables, whose entries for the copied code are
	// copied along (see copyORC).
	classORC
	// classRefuse: metadata the new code needs and the generator cannot
	// provide yet: generating anyway would crash the kernel.
	classRefuse
	// classUnknown: not understood; refused like classRefuse.
	classUnknown
)

// dropped lists the sections whose entries for the copied code are left
// out, with the reason it is safe. See the package documentation.
var dropped = []struct{ prefix, reason string }{
	{"__mcount_loc", "ftrace call sites"},
	{"__patchable_function_entries", "ftrace call sites"},
	{".discard", "objtool annotations the linker discards"},
	{".retpoline_sites", "retpoline call sites the kernel may rewrite"},
	{".return_sites", "return thunk sites the kernel may rewrite"},
	{".call_sites", "call depth tracking sites the kernel may rewrite"},
	{".ibt_endbr_seal", "ENDBR instructions the kernel may seal"},
	{".smp_locks", "LOCK prefixes the kernel may drop on one CPU"},
	{".debug_", "debugging information"},
	{".eh_frame", "unwind information for debuggers"},
	{".comment", "compiler identification"},
	{".note", "notes"},
	{".BTF", "type information"},
}

// refused lists the sections whose entries in new code the generator
// cannot carry yet, with what they are.
var refused = map[string]string{
	"__bug_table":                "a WARN or BUG (bug table entry) the generator could not copy",
	"__ex_table":                 "an exception table entry (user access or other fixup) the generator could not copy",
	".altinstructions":           "an alternative instruction the generator could not copy",
	".altinstr_replacement":      "alternative replacement code the generator did not copy",
	".altinstr_aux":              "static_cpu_has code the generator did not copy",
	"__jump_table":               "a static key (jump label) the generator could not copy",
	".static_call_sites":         "a static call the generator could not copy",
	".parainstructions":          "a paravirt patch site the generator could not copy",
	"__kprobe_blacklist":         "a kprobe blacklist entry",
	"_error_injection_whitelist": "an error injection entry",
}

// ordinary lists name prefixes of code and data sections whose
// references to a replaced function stay valid.
var ordinary = []string{
	".text", ".data", ".rodata", ".bss", ".init.", ".exit.", ".ref.", ".meminit.", ".memexit.",
	".noinstr.text", ".entry.text", ".sched.text", ".spinlock.text", ".cpuidle.text", ".head.text",
	".kprobes.text", ".irqentry.text", ".softirqentry.text",
	".initcall", ".con_initcall", ".exitcall", "___ksymtab", "__ksymtab", "__param",
}

// classify says what to do with a section named name that refers to
// copied code, and why.
func classify(name string) (sectionClass, string) {
	if name == ".orc_unwind" || name == ".orc_unwind_ip" {
		return classORC, "ORC unwind table"
	}
	if why, ok := refused[name]; ok {
		return classRefuse, why
	}
	for _, d := range dropped {
		if strings.HasPrefix(name, d.prefix) {
			return classDrop, d.reason
		}
	}
	for _, p := range ordinary {
		if strings.HasPrefix(name, p) {
			return classOrdinary, ""
		}
	}
	return classUnknown, "a section the generator does not understand"
}

// replaceableCode reports whether a function in a section of this name
// can be replaced or added: ordinary text, not init code (freed after
// boot) or the special text sections of entry, noinstr or kprobes code,
// which ftrace does not trace.
func replaceableCode(name string) bool {
	return name == ".text" || strings.HasPrefix(name, ".text.")
}

// copyableData reports whether a section may be copied into the module
// whole: read-only data (strings, constants, jump tables) that only the
// new code reads, so a private copy is indistinguishable from the
// original.
func copyableData(name string, writable, exec, alloc, nobits bool) bool {
	return alloc && !writable && !exec && !nobits && (name == ".rodata" || strings.HasPrefix(name, ".rodata."))
}
