// Package klpgen generates a Linux livepatch module that replaces
// exactly the functions a source patch changed, as kpatch-build does:
// from the patched compilation unit, compiled before and after the patch
// with -ffunction-sections -fdata-sections, it takes the changed
// functions' code as the compiler emitted it and wraps it in a module the
// kernel's livepatch core (CONFIG_LIVEPATCH, x86-64) applies. Finding
// what changed is package objdiff's work; building the units is ksrc's.
//
// # Three steps
//
// LoadSymbols reads what the target kernel offers: Module.symvers (the
// exported symbols) and System.map or the target's /proc/kallsyms (every
// vmlinux symbol, in kallsyms order, to count how many carry each name).
// Debian's image package ships a placeholder System.map; the real one is
// in the -dbg package.
//
// Generate writes the module source folder (Output.Files): patch.o, a
// relocatable object with the new code, stub.c, the klp_patch whose
// klp_funcs point at it, a Kbuild file linking both into
// <ModuleName>.ko, and .patch.o.cmd, the command file kbuild writes for
// objects it compiles and modpost reads for symbol versions. kbuild
// builds the folder as any out-of-tree module (an object without a
// source is used as it is), with one extra variable:
// make -C <build> M=<folder> KBUILD_MODPOST_WARN=1 modules
// (Output.MakeArgs), because patch.o refers to placeholder symbols
// modpost cannot resolve and must only warn about.
//
// Finalize rewrites the linked .ko into the livepatch ELF format
// (Documentation/livepatch/module-elf-format.rst): placeholders become
// livepatch symbols, and the relocations against them move into
// livepatch relocation sections, which the kernel applies after looking
// the symbols up in kallsyms. The order is build, strip debug
// information, Finalize, sign: Finalize's output is what is checked, so
// only signing (which appends) should come after it, and a signature
// covers the bytes Finalize rewrites. (strip --strip-debug after
// Finalize keeps the livepatch symbols but renumbers the symbol table
// and drops SHF_INFO_LINK from the livepatch sections: untested with
// the kernel, and not needed.)
//
// # What patch.o holds
//
// For each changed function F: its section .text.F and, when gcc split
// one off, its cold part F.cold in .text.unlikely.F, byte for byte, under
// the global symbol __klp_new_F that the stub names as klp_func.new_func.
// Added functions (new helpers the changed ones call), and changed ones
// livepatch cannot redirect that only replaced code calls (below), are
// copied the same way under local symbols __klp_add_F. Read-only data the new code uses
// without a name in the kernel (string literals, .rodata.cst*, jump
// tables, and constant objects new in the patch) is copied whole: it is
// private to the new code, so a copy cannot be told from the original.
//
// Every relocation of the copied sections is re-targeted:
//
//   - to another copied function: the copy, so new code calls new code;
//   - to a symbol vmlinux exports: an undefined symbol of that name, which
//     the module loader resolves as for any module (this covers
//     __fentry__, __x86_return_thunk and the retpoline thunks; the stub
//     imports the namespaces of namespaced exports);
//   - to anything else in vmlinux (static functions and variables of the
//     unit, unexported globals): a placeholder for a livepatch symbol, an
//     undefined symbol named "__klp_sym__vmlinux__NAME__POS" that ld and
//     modpost carry through and Finalize renames ".klp.sym.vmlinux.NAME,POS"
//     (see KLPSymbol). Variables, writable or not, are always the
//     originals in the running kernel, never copies: the new code must
//     share the old code's state. POS is the kallsyms position, 0 when
//     the name is unique in System.map; for a name carried by several
//     symbols, the position of the patched unit's copy (or an
//     *AmbiguousSymbolError when it cannot be told), and a name carried
//     by none is refused with *MissingSymbolError.
//
// gas writes a relocation against a local symbol as one against its
// section plus an offset (.bss.counter-5). With -fdata-sections a
// section holds one object, so the section names it; when it holds
// several, the offset decides, allowing for the 4 to 8 bytes between an
// x86-64 PC-relative field and the end of its instruction, and anything
// that cannot be attributed to exactly one symbol is refused.
//
// # What is dropped, and what is refused
//
// Sections that describe the copied code are handled by kind (classify):
//
//   - ORC unwind entries (.orc_unwind, .orc_unwind_ip) are copied for the
//     new code, so the unwinder, and livepatch's reliable stack check on
//     tasks sleeping in the new code, work as they do for the old code.
//   - Dropped, because the new code works without them: __mcount_loc and
//     __patchable_function_entries (the new function is reached through
//     the livepatch ftrace handler on the old one, not patched by ftrace
//     itself; its own call to __fentry__ stays a call to a function that
//     returns at once); .retpoline_sites, .return_sites and .call_sites
//     (they only let the kernel rewrite thunk calls, which work
//     unrewritten); .ibt_endbr_seal (IBT is off in Debian's 6.1 kernel
//     and an unsealed ENDBR is harmless); .smp_locks (keeping a LOCK
//     prefix is always correct); .discard.* (objtool annotations) and
//     debugging information.
//   - Copied entry by entry with the copied code (tables.go), which the
//     module loader registers for the module's own code: __bug_table
//     (WARN, BUG; 12-byte entries), __ex_table (user access fixups;
//     12-byte entries), __jump_table and .static_call_sites (a key of
//     vmlinux or of the module itself; one of the patched module is
//     refused), .parainstructions (paravirt sites, 16-byte entries,
//     which module_finalize rewrites), their relocations re-targeted to
//     the copies.
//   - Dynamic debug descriptors of the copied code (__dyndbg, one
//     struct _ddebug per pr_debug site) are copied into the module's own
//     __dyndbg with copies of their strings, and the copied code and its
//     jump entries point at the copies (dyndbg.go); the kernel registers
//     them under the livepatch module's name. A classed site is refused.
//   - Alternative instructions of the copied code (.altinstructions,
//     12-byte struct alt_instr entries) are copied into the module's own
//     .altinstructions with their replacement bytes
//     (.altinstr_replacement) and the static_cpu_has code the new code
//     jumps to (.altinstr_aux), all re-targeted to the copies
//     (alternatives.go); the kernel applies them when it loads the
//     module, after the vmlinux livepatch relocations. A relocation
//     against a module's symbol in a replacement or under an instruction
//     an alternative may overwrite is refused: it is applied only after
//     the alternatives.
//   - Refused with *UnsupportedError naming the function and the section,
//     because the new code would need them and silently dropping them
//     would crash the kernel: an entry table or .altinstructions
//     without the layout above, and any section not understood.
//
// Replaced functions must be traceable: when the unit calls __fentry__
// at all, each replaced function must call it at its entry, or it is
// notrace or noinstr and livepatch could not redirect it. Such a
// function is still carried when no code the bundle leaves in place
// can call it (Options.Private, from objdiff's Function.Private: it is
// static, its address is never taken, and every function that refers
// to it is changed or added and calls it): it becomes a copy like an
// added function (__klp_add_F, its cold part with it), the replaced
// functions' copies call that copy (their relocations to it are bound
// to the copy, never to the kernel's symbol), and the kernel's copy
// keeps serving the old callers. A task runs either version only below
// the frame of a caller livepatch redirects, so its stack check holds
// the task back while it runs one; a notrace function called by such a
// copy is carried the same way, if it qualifies too. Otherwise the
// refusal says why (Options.Exposed: "before: X calls it and is not
// replaced by the patch"). A changed function whose new prototype only
// the bundle's replaced code calls (Options.Forked, from objdiff's
// Function.Forked) is copied the same way whether ftrace could redirect
// it or not, and never redirected: the kernel's copy keeps serving the
// callers compiled for the old prototype, and the copy is global when
// another part's code calls it (BundleAdds lists it). They must sit
// alone in ordinary text sections (.text.F): functions the kernel places
// in .sched.text, .noinstr.text, .init.text and the like share one
// section per unit and are refused.
//
// # Not supported yet
//
// Ambiguous names (a static function or variable whose name several
// vmlinux symbols carry) are found at their kallsyms position by the
// company they keep in System.map ([Symbols.Position]): System.map does
// not say which unit a symbol came from, so a name whose copies cannot
// be told apart that way is refused. Static variables local to a
// function are found by the name gcc gave them in the patched object
// (count.0); the caller must check that the unpatched object used the
// same name. Shadow variables for new state in existing structures,
// and the special sections refused above are future work.
//
// # Modules
//
// A unit built into a module is patched through a klp_object named
// after it (Options.Module). Its own symbols, from the module's .ko
// (LoadModuleSymbols), become .klp.sym.MODULE.NAME,POS, which Finalize
// puts into .klp.rela.MODULE.* sections that the kernel applies when
// the module loads; unexported vmlinux symbols stay in .klp.rela.vmlinux.*
// sections, applied when the livepatch module loads (Linux 6.1 refuses a
// vmlinux symbol in a module's section).
//
// A symbol another module N exports (Module.symvers names the exporter)
// that the module's new code calls is reached in N, never linked by
// name: .klp.sym.N.NAME,POS in the patched module's own .klp.rela.MODULE.*
// sections (KLPSymbol.Section), which kernel/livepatch/core.c
// klp_resolve_symbols resolves when it patches the module, looking the
// name up in N's kallsyms (klp_find_object_symbol). That is safe only
// when N is loaded whenever the module is: N must be among the modules
// the module depends on, transitively (the depends of each .modinfo;
// Options.Dependencies, LoadDependencies), which holds for any export
// the module's unpatched code already used. Otherwise, or for a
// namespaced export whose namespace the module does not import, it is
// refused with *DependencyError. POS is 0 when N's symbol table has the
// name once, else the position of N's global definition among them
// ([Symbols.GlobalPosition]: a module's kallsyms keep its symbol table's
// order).
//
// # Parts of a bundle that use each other's additions
//
// A patch to several files makes one part per file (Combine). A global
// function or variable one part adds (BundleAdds; the running kernel
// has none) may be called from another part's new code: mlx4_ib's
// patched mlx4_ib_qp_event calls mlx4_put_qp, which the same patch adds
// to mlx4_core. Options.Bundle lists every part's additions; a reference
// to one of them (an undefined global of the referring part) is bound,
// before anything else is searched, to the adding part's copy, whose
// symbol (BundleSymbol.Symbol) the adding part makes global, so that ld
// links the two parts' objects inside the livepatch module. The copy's
// own references into its module are livepatch relocations of that
// module, which the kernel applies only when that module loads and only
// for a klp_object of the patch: a part that only adds gets a
// klp_object with an empty klp_func table (stub), and the binding is
// allowed only when the adding object is loaded whenever the referring
// code can run: the same object, vmlinux, or a module the referring
// module depends on, transitively. Otherwise it is a
// *BundleDependencyError. The new function's export entry
// (___ksymtab+NAME) is not copied: the section is ordinary (classify),
// and a livepatch module exports nothing, so only the bundle's own code
// calls the function.
//
// # What the kernel requires (Linux 6.1)
//
// kernel/livepatch/core.c scans livepatch symbol names with
// ".klp.sym.%55[^.].%511[^,],%lu" and requires every symbol a livepatch
// relocation section refers to be marked SHN_LIVEPATCH (0xff20); it
// scans section names with ".klp.rela.%55[^.]". kernel/module/main.c
// applies a section marked SHF_RELA_LIVEPATCH (0x00100000) through
// livepatch, and only when the section it applies to (sh_info) is
// allocated; module-elf-format.rst asks for SHF_ALLOC on the relocation
// section itself so it is kept in memory for objects patched later. The
// loader keeps a livepatch module's whole symbol table in its original
// order, which is why Finalize keeps every index and why nothing may
// rewrite the symbol table afterwards. The x86-64 loader refuses to
// apply a relocation over non-zero bytes, which Generate checks.
//
// # Input handling
//
// Objects and modules are untrusted input: each is bounded
// (MaxObjectSize, symbol lists 64 MiB), its headers are checked by hand
// before debug/elf parses them under a recover (internal/elf64, the
// reader objdiff and kmod share), and every section, symbol and
// relocation read is bounds-checked against the file. The package runs no programs.
package klpgen
