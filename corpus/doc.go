// Package corpus is the measuring instrument of create --patch: it turns
// a kernel update into units, one per fix, and keeps what happened to each
// unit in a results file, as the Ksplice paper measured Ksplice on three
// years of Linux security fixes.
//
//   - ParseChangelog reads a Debian changelog; Between returns the changes
//     an update brings (for the kernel, the subjects of the upstream
//     commits each stable update merged, with their CVEs).
//   - ParseTreeDiff reads `diff -rupN` of two source trees; Group splits
//     it into units. The changelog lists subjects, not diffs, and Debian's
//     linux-source package carries the patched tree only (no debian/
//     folder, no per-fix patches: stable updates reach Debian as new
//     upstream versions), so attributing a hunk to a change is a
//     heuristic: the subject's prefix naming the file's path, name or
//     folders, and identifiers of the subject being the hunk's function
//     (diff -p's hunk context) or appearing in its lines. A hunk goes to
//     the change that scores best, when it scores enough and strictly more
//     than any other; the hunks of a file no change claims form one unit
//     per file. Its limits: two changes to one file whose subjects name
//     neither the file nor the code end up in one file unit; a change
//     whose subject names its subsystem but not its files may claim a
//     neighbour's hunk; and a change no hunk is attributed to makes no
//     unit. Then each unit takes along, as copies, the hunks of other
//     units that newly declare or define an identifier its added lines
//     use and the older versions of its files do not name (takealong.go:
//     a line-based reading of C in kernel style, no compiler): a
//     prototype, static inline, macro, type, enumerator, struct member
//     (from a header the unit's files include) or a new function, from
//     hunks that remove nothing and change no existing function's body,
//     transitively, at most MaxTaken. Unit.Took (and each Record) says
//     which hunks came from where. A copy rather than a move because each
//     unit is measured by itself against the older tree: the declaration
//     belongs to every unit that needs it, and the unit it was grouped
//     into keeps it.
//   - A unit whose build lacks a name (gcc's undeclared function,
//     variable, member or type; klpgen's symbol the running kernel does
//     not have) is measured again, by Run, together with the units of
//     the update that hold it (Unit.Widen): the rest of the same fix the
//     attribution split off in the unit's own files, or the change that
//     defines the helper or member it uses. Whole units come along, at
//     most MaxWith, for at most MaxWidenRounds rounds; Record.With names
//     them, and the summary counts the units that passed only together.
//     Each of those units is measured by itself as well. Likewise a unit
//     whose bundle adds a function nothing it carries uses (create
//     warns; Record.Unreached) is measured again together with the
//     units whose added lines call it (Unit.WidenUsers): a helper whose
//     caller, in init code say, went to another unit is half a fix.
//   - IndexDebugInfo says which source files the target configuration
//     built, and into what (vmlinux or a module), from the compilation
//     units and line tables of the kernel's and the modules' DWARF debug
//     info (Debian's -dbg package): kbuild's answer, read from what it
//     produced.
//   - Run runs units through a Check (cmd/corpus: create --patch and a
//     guest in the QEMU lab), skipping units the results file (JSON lines,
//     one Record per unit, appended and synced as each finishes) already
//     holds, so a stopped run resumes; Summary.Line is the line scripts
//     read. Sample picks a seeded sample of the units the configuration
//     builds.
package corpus
