// Package objdiff compares two relocatable x86-64 ELF objects, built from
// the same source before and after a fix (PRE.o and POST.o), and says
// which functions changed and whether a livepatch can carry the change.
//
// Objects are expected to be built with -ffunction-sections and
// -fdata-sections, so every function and variable has a section of its
// own, and with -g for the checks that need DWARF. The package is built
// around four ideas:
//
//   - Compare what code refers to, not where it happens to be. A function
//     is the bytes of its symbol with every relocated field zeroed, plus,
//     for each relocation, its offset, type and target. The target is
//     described independently of layout: a symbol name and addend; for a
//     section symbol, the symbol that covers the place it points at; for
//     a string literal pool (SHF_STRINGS), the string itself, so a
//     function whose only change is a literal's text is changed; for a
//     merged constant, its bytes; for any other anonymous data (jump
//     tables), a digest of the item, split at every offset something
//     points at. PC-relative references in code point 4 bytes past their
//     addend (lea .LC0(%rip) has addend -4), which is added back before
//     looking the target up.
//   - Every section has a class (sections.go). Code sections (.text*,
//     .init.text, ...) are compared one function symbol at a time, plus
//     any code outside a function symbol that is not padding (short
//     alignment runs, or NOP fill such as -fpatchable-function-entry puts
//     before each function). Data sections (.data*, .bss*, .rodata*, ...) are compared
//     one object symbol at a time; literal pools, the local labels the
//     assembler keeps for them (.LC0) and compiler-made tables (CSWTCH.*,
//     __func__.*) only through the references to them. Sections
//     never loaded (debug info, notes, comments) and tables generated from
//     the code (.eh_frame, __mcount_loc, ORC, call-site lists) are
//     ignored. __bug_table and __ex_table are compared function by
//     function: the entries of changed and added functions go with their
//     code, those of other functions must say the same as before (line
//     numbers aside). Dynamic debug descriptors (__dyndbg) are compared
//     by the function that refers to each (dyndbg.go): those of changed
//     and added functions go with their code, those of other functions
//     must say the same as before, line number aside. Alternative
//     instructions (.altinstructions) are compared by function too
//     (alternatives.go): an entry's instruction, CPU feature, lengths and
//     replacement code; the replacement and static_cpu_has code
//     (.altinstr_replacement, .altinstr_aux) only through what refers
//     to it. Paravirt patch sites (.parainstructions) are an entry
//     table like __bug_table. Every other section (.fixup, exports,
//     ...) is compared whole, and any difference is refused with a
//     reason, rather than ignored; except the export entry of an added
//     function (___ksymtab+NAME and its strings in __ksymtab_strings,
//     exports.go), which no running code knows: it is listed in
//     [Result.AddedExports], and a patch module leaves it out; and the
//     export entry of a removed function, which the running kernel keeps
//     with the function ([Result.RemovedExports]: a livepatch removes
//     nothing).
//   - Refuse what a livepatch cannot carry ([Result.Unsafe], and
//     [Result.Err], an [*UnsafeError] wrapping [ErrUnsafe]): changed
//     data ([KindData]; the kernel keeps its variables and their
//     current values; a new variable is listed in [Result.AddedData]
//     instead, for the patch module to carry, unless gcc's numbering of
//     function-local statics may have shifted), changed or new init code or data ([KindInit]; it
//     ran once and was freed), changed prototypes ([KindSignature];
//     callers that are not patched pass the old arguments, unless
//     none can: see below), changed layouts of a struct or union
//     ([KindData]; the kernel's objects keep the old one, unless only
//     the unit's stacks hold the type: see below), functions
//     whose code is inlined into callers that must be patched with them
//     ([KindInlined]), and changes in sections objdiff does not
//     understand ([KindSection]). Added functions are not refused: only
//     changed code can refer to them, since unchanged code has unchanged
//     references. Removed variables are not reported: the kernel keeps
//     them and no new code uses them.
//   - Inputs are untrusted. [Limits.Open] takes bytes, never a path; it
//     checks the ELF and section headers by hand against [Limits] (size,
//     sections, symbols, relocations) with internal/elf64, the reader
//     klpgen and kmod share, before debug/elf parses anything,
//     checks every symbol and relocation against its section, and runs
//     all parsing, ELF and DWARF, under recover, so a malformed object is
//     an error wrapping [ErrMalformed] that names the file. DWARF work is
//     bounded by the size of .debug_info (debug/dwarf can return null
//     entries forever on a truncated LEB128) and range list decoding by a
//     budget. All relocation targets are resolved in Open, so an [Object]
//     is immutable and [Compare] is a pure function of two of them.
//
// Inlining and prototypes come from DWARF. Relocations in the debug
// sections are applied here, turning an address at offset x of section i
// into (i+1)<<32 | x, so DWARF code addresses name their section and map
// to function symbols. An inlined copy (DW_TAG_inlined_subroutine) is
// compared by the code of its ranges in its caller; a copy that changed
// in a changed caller reports the inline function with every changed
// caller. A function that has a symbol on one side and is inlined
// (DW_AT_inline) on the other is reported with the changed callers that
// refer to it. GCC drops the DWARF entry of a copy folded entirely into
// its caller's code; such a copy is not seen, though the caller is still
// reported changed. Prototypes are compared by type names (return type
// and parameter types, names of parameters ignored); a changed struct
// layout behind an unchanged name is found by comparing layouts
// instead. Without debug info in
// both objects, prototypes are not compared, and the only inlining found
// is a function gone from POST while its callers changed, refused because
// objdiff cannot tell inlining from removal; [Result.Notes] says so.
//
// Two of these refusals have exceptions, each accepted with a note in
// [Result.Notes] that says why; kpatch checks neither layouts nor
// prototypes, so both stay stricter than kpatch:
//
//   - A struct or union whose layout changed is accepted when only the
//     unit's own stacks hold it (stack.go), in both objects: DWARF says
//     it is defined in the compiled .c file itself (DW_AT_decl_file is
//     the unit's own file, not a header), no variable of static storage
//     and no member of any type mentions it, and it is held only by
//     value in local variables (at least one) and through pointer
//     parameters of static functions, never through a pointer local
//     variable (which may point to the heap), a return type or a
//     function type. The livepatch consistency model runs each task
//     wholly on old or wholly on new code, switching a task only when
//     no replaced function is on its stack; an object on a task's
//     stack is made and used by that task's code, and every function
//     whose code depends on the layout (one that allocates it, reads a
//     moved member or takes its size) has different object code and is
//     replaced, while code that compiles the same is right for both
//     layouts. What DWARF cannot show stays out of reach: a pointer
//     cast from an untyped one (void *, container_of through a member)
//     into a pointer parameter, or a stack object another task reaches
//     while its owner sleeps, would see objects of the other layout.
//     kernel/sched/fair.c's struct lb_env is the case it is for.
//
//   - A function whose prototype changed is accepted when it is static,
//     its address is never taken (in both objects, every reference to
//     it is the rel32 target of a call, jmp or jcc at its entry, decoded
//     with internal/x86insn, from a function's code; one from data or
//     from an instruction such as lea or mov is refused), and every
//     function that calls it, before and after, is replaced by the
//     patch (calls.go). No other object can name it, no unpatched code
//     calls it, and a task that runs new code calls it with the new
//     arguments, so no call reaches the new code with the old ones
//     through the ftrace redirection. Entries of the instruction tables
//     (__ex_table, __jump_table, ...) that point inside it describe its
//     own code and do not count.
//
//   - A global function whose prototype changed, and that after the
//     patch only functions the patch replaces or adds call (direct
//     calls at its entry, no tail call, no reference but its export
//     entry), is marked [Function.Forked]: a bundle carries it as a new
//     function beside the kernel's copy, which it does not redirect, so
//     callers it leaves in place keep the arguments they were compiled
//     for. The other objects of the bundle must reach it the same way:
//     [Result.CallsFromReplaced] says, for a function another object
//     defines, whether every reference to it is such a call.
//
//   - A changed global function livepatch cannot redirect (no __fentry__
//     call at its entry: notrace, or a file built without ftrace, which
//     only [Options.Kernel] tells from a test object), whose every
//     reference in its own object is such a call, is marked Forked and
//     [Function.Unredirectable] (untraceable.go): carried beside the
//     kernel's copy, it reaches the other objects' callers only if they
//     are replaced too. Comparing those objects with [Options.CallersOf]
//     naming it takes every function that refers to it as changed, so
//     that the bundle replaces it and its copy calls the bundle's. With
//     [Options.InitRan] (vmlinux), a reference from init code, which ran
//     at boot and was freed, counts as none.
//
// The same analysis marks every changed function [Function.Private] when
// only code the patch replaces can call it, and says otherwise why not
// ([Function.Exposed]): static, its address never taken, every caller
// replaced, and each caller calls it rather than jumps to it (a tail
// call leaves no frame of the caller on the stack, which livepatch's
// consistency model would need to keep a task on one version while it
// runs the function). A bundle can then carry the new version as a copy
// only the replaced callers' copies call, which is how klpgen carries a
// changed function livepatch cannot redirect (notrace, or the kernel's
// inline, which implies it: fair.c's update_sd_lb_stats.constprop.0).
//
// Functions and variables are matched by symbol name. GCC numbers static
// locals (count.0) and clones (helper.isra.0, helper.cold); if the
// numbering shifts, the variable shows as new and is refused. Names the
// kernel's __UNIQUE_ID macro makes (a stem plus gcc's __COUNTER__) are
// matched by stem, kind and content instead (unique.go), and references
// to them compare by the name of their match, so a fix that uses
// __COUNTER__ once more does not make them new.
//
// Changed init code is refused, with what made it change; where it is
// only inlined copies of functions the bundle replaces elsewhere, and
// the object is vmlinux (its init code ran at boot and was freed),
// [Result.LeaveOutInit] leaves it out instead (init.go says why a
// module's init is not). Without
// -ffunction-sections, calls between functions of one section are
// resolved by the assembler without relocations, so a function shows as
// changed when a neighbour moves.
package objdiff
