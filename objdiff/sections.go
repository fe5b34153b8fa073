package objdiff

import (
	"debug/elf"
	"fmt"
	"slices"
	"strings"
)

// class is what objdiff does with a section.
type class int

const (
	// classMeta sections describe the object rather than the kernel's
	// code and data (symbols, names, notes, debug info), or are
	// regenerated from the code objdiff compares (unwind tables, ftrace
	// call sites). They are not compared; relocation sections are
	// compared as part of the section they apply to.
	classMeta class = iota
	// classCode sections hold functions, compared one function symbol at
	// a time.
	classCode
	// classData sections hold variables, compared one object symbol at a
	// time.
	classData
	// classPool sections hold literals (strings, constants) that have no
	// symbols; they are compared through the references to them.
	classPool
	// classSpecial is everything else, compared as whole sections: any
	// difference is a [KindSection] problem.
	classSpecial
)

// Section name prefixes. A name matches a prefix p if it is p or starts
// with p followed by a dot (".text" matches ".text.foo" and ".text..bar").
var (
	codePrefixes = []string{
		".text", ".init.text", ".exit.text", ".ref.text", ".sched.text",
		".cpuidle.text", ".noinstr.text", ".entry.text", ".irqentry.text",
		".softirqentry.text", ".kprobes.text", ".spinlock.text", ".lock.text",
		".meminit.text", ".head.text",
	}
	dataPrefixes = []string{
		".data", ".bss", ".rodata", ".tdata", ".tbss", ".ldata", ".lbss",
		".lrodata", ".init.data", ".init.rodata", ".init.bss", ".exit.data",
		".ref.data", ".ref.rodata", ".meminit.data", ".meminit.rodata",
	}
	// generatedPrefixes are loaded sections derived from the code objdiff
	// compares (unwind tables, ftrace and mitigation call-site lists,
	// objtool annotations): they change whenever code moves, and a
	// livepatch module gets its own from its own build.
	generatedPrefixes = []string{
		".eh_frame", "__mcount_loc", "__patchable_function_entries",
		".orc_unwind", ".orc_unwind_ip", ".orc_header", ".return_sites",
		".retpoline_sites", ".call_sites", ".ibt_endbr_seal", ".discard",
		// Where the LOCK prefixes are, for the kernel to drop them on one
		// CPU: generated from the code, and a patch module that keeps
		// every LOCK prefix is correct on any number of CPUs.
		".smp_locks",
	}
	// initPrefixes are sections whose contents run or are used only while
	// the kernel or a module initializes.
	initPrefixes = []string{".init.", ".meminit.", ".head.text"}
)

// Section types outside debug/elf's list.
const (
	shtX86Unwind    elf.SectionType = 0x70000001
	shtLLVMAddrsig  elf.SectionType = 0x6fff4c03
	shtGNUAttribute elf.SectionType = 0x6ffffff5
)

func hasPrefix(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if name == p || strings.HasPrefix(name, p+".") {
			return true
		}
	}
	return false
}

func isInit(name string) bool {
	for _, p := range initPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func classify(s *section) class {
	switch s.typ {
	case elf.SHT_NULL, elf.SHT_SYMTAB, elf.SHT_STRTAB, elf.SHT_RELA, elf.SHT_GROUP,
		elf.SHT_NOTE, shtX86Unwind, shtLLVMAddrsig, shtGNUAttribute:
		return classMeta
	}
	if s.flags&elf.SHF_ALLOC == 0 || hasPrefix(s.name, generatedPrefixes) {
		// Never loaded (comments, notes, debug info), or generated.
		return classMeta
	}
	switch {
	case slices.Contains(alternativeCode, s.name):
		// Replacement and feature-test code without symbols, compared
		// through the references to it (alternatives.go).
		return classPool
	case s.typ == elf.SHT_PROGBITS && s.flags&elf.SHF_EXECINSTR != 0 && hasPrefix(s.name, codePrefixes):
		return classCode
	case (s.typ == elf.SHT_PROGBITS || s.typ == elf.SHT_NOBITS) && s.flags&elf.SHF_EXECINSTR == 0 && hasPrefix(s.name, dataPrefixes):
		if s.flags&elf.SHF_MERGE != 0 && s.flags&elf.SHF_WRITE == 0 {
			return classPool
		}
		return classData
	}
	return classSpecial
}

// specialReasons say why a change in a well-known kernel section cannot be
// carried, by name prefix.
var specialReasons = []struct{ prefix, reason string }{
	{".altinstr", "alternative instructions are chosen and patched in once, at boot or module load; a livepatch cannot re-run that choice for code it does not replace"},
	{".parainstructions", "paravirt call sites are patched once at boot or module load; a livepatch cannot re-run that for code it does not replace"},
	{"__jump_table", "static-key jump entries are registered when the kernel or module loads; changed or new ones are not"},
	{".static_call_sites", "static call sites are registered when the kernel or module loads; changed or new ones are not"},
	{"__ex_table", "exception table entries are sorted and registered at load; a fault in new code would find no fixup"},
	{".fixup", "exception fixup code goes with __ex_table entries, which are registered at load"},
	{"__bug_table", "BUG/WARN entries are looked up in the tables registered at load"},
	{"__tracepoint", "tracepoints are registered when the kernel or module loads"},
	{"_ftrace_events", "trace events are registered when the kernel or module loads"},
	{"__ksymtab", "exported symbols cannot be added, removed or changed by a livepatch"},
	{"__kcrctab", "exported symbol CRCs cannot be changed by a livepatch"},
	{".initcall", "initcalls ran at boot and will not run again"},
	{".init_array", "constructors ran at load and will not run again"},
	{".ctors", "constructors ran at load and will not run again"},
	{"__param", "module parameters are registered at load"},
	{".modinfo", "module metadata is read at load"},
	{".gnu.linkonce.this_module", "struct module is set up at load"},
}

func specialReason(s *section) string {
	for _, r := range specialReasons {
		if strings.HasPrefix(s.name, r.prefix) {
			return r.reason
		}
	}
	return fmt.Sprintf("objdiff does not understand section %s (type %s, flags %s) and cannot tell what the change does", s.name, s.typ, s.flags)
}
