// Package elf64 is the one hardened reader of relocatable ELF64 objects
// and kernel modules: klpgen (objects and modules it rewrites), objdiff
// (objects it compares) and kmod (modules it describes) open their input
// here.
//
// The input is untrusted bytes, never a path, and is verified before it
// is parsed. [Check] reads the ELF header and every section header by
// hand: the size against [Limits], the class, byte order, type and
// machine, the section header table and every section's file range
// against the input, and the number of sections, symbols and
// relocations against [Limits]. Only then does [Open] hand the bytes to
// Go's debug/elf, which is documented as not hardened against hostile
// input: it parses the headers under a recover, so a panic in it becomes
// an error, and its lazy section readers are not used afterwards.
// Section contents are sub-slices of the input taken with explicit
// bounds ([SectionBytes]), compressed sections are refused (their
// header's size does not bound what they expand to), and the Elf64_Sym
// and Elf64_Rela records are decoded by hand ([DecodeSym],
// [DecodeRela]).
//
// Every error is an [*Error] whose Kind is [ErrMalformed],
// [ErrUnsupported] or [ErrTooLarge]. Callers keep their own sentinels
// and messages: [Error.Wrap] puts the caller's sentinel in place of the
// kind, keeping the detail.
package elf64
