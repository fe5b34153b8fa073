package klpgen

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Bounds on the symbol inputs. Debian's 6.1 Module.symvers is about
// 1 MiB and a full System.map about 8 MiB.
const (
	maxSymbolsInput = 64 << 20
	maxSymbolsLine  = 4096
)

// Symbols is what the generator knows about the target kernel's symbols:
// which vmlinux symbols are exported (Module.symvers) and how many
// vmlinux symbols carry each name (System.map, or /proc/kallsyms of the
// target, which has the same format). Counting matters because
// livepatch finds an unexported symbol by name and kallsyms position,
// and position 0 means "the only one".
//
// Symbols of a module (LoadModuleSymbols) count the module's own
// symbols instead, and carry what its .modinfo says: the modules it
// depends on and the symbol namespaces it imports.
type Symbols struct {
	exports map[string]string // exported by vmlinux: name -> namespace ("" for none)
	counts  map[string]int    // vmlinux symbols by name
	total   int
	order   []string         // vmlinux symbol names in System.map (address) order
	addr    []uint64         // their addresses
	at      map[string][]int // indices into order of the names that occur more than once
	files   map[int]string   // source file of each index in at, from vmlinux (LoadSourceFiles)

	modExports map[string]ModuleExport // exported by a module (Module.symvers)

	// Of a module: its global definitions' positions among the symbols
	// of their name (names that occur more than once), and its .modinfo.
	globalAt map[string]uint64
	depends  []string
	imports  []string
}

// ModuleExport is a symbol a module exports, as Module.symvers lists it.
type ModuleExport struct {
	// Module is the exporting module's name as the kernel knows it ("_"
	// for kbuild's "-"), e.g. "fat" for fs/fat/fat.
	Module string
	// Namespace is the export's symbol namespace, "" for none.
	Namespace string
}

// neighbourhood is how many System.map entries on each side of a
// candidate [Symbols.Position] looks at for the unit's other symbols.
const neighbourhood = 64

// Position is the kallsyms position (klp_func.old_sympos, the POS of
// .klp.sym.vmlinux.NAME,POS) of the vmlinux symbol called name that u
// means: 0 when the name is unique, else 1 for the first symbol of that
// name in address order, 2 for the second, and so on.
//
// With the vmlinux's source files loaded ([Symbols.LoadSourceFiles]),
// a static symbol's candidates are the copies defined in u's file, and a
// global's the global copies: one left is the answer, none is an
// *AmbiguousSymbolError. Several are left when units of the same base
// name (two main.c) define it; they, or without the source files every
// copy, are then told apart by address: the linker lays a unit's
// functions out together, and its variables together, so the unit's own
// copy is the candidate whose neighbourhood in address order holds the
// most of the unit's other symbols. Only names unique in vmlinux count,
// so that another unit's copies of the same static helpers do not vote.
// A tie, or no neighbour at all, is an *AmbiguousSymbolError: guessing
// would patch or reach another unit's symbol.
func (s *Symbols) Position(name string, u Definer) (uint64, error) {
	idx := s.at[name]
	if len(idx) == 0 {
		return 0, nil // unique or missing: the caller checks Count
	}
	cand := make([]int, len(idx)) // positions - 1
	for i := range idx {
		cand[i] = i
	}
	if want := u.File; s.files != nil && (u.Global || want != "") {
		if u.Global {
			want = globalFile
		}
		cand = cand[:0]
		for i, at := range idx {
			if s.files[at] == want {
				cand = append(cand, i)
			}
		}
		switch {
		case len(cand) == 0 && u.Global:
			return 0, &AmbiguousSymbolError{Name: name, Count: len(idx), Reason: "vmlinux's symbol table has no global symbol of the name"}
		case len(cand) == 0:
			return 0, &AmbiguousSymbolError{Name: name, Count: len(idx),
				Reason: fmt.Sprintf("vmlinux's symbol table says none of them was defined in %s", want)}
		case len(cand) == 1:
			return uint64(cand[0] + 1), nil
		}
	}
	unit := u.Names
	own := map[string]bool{}
	for _, u := range unit {
		if u != name && s.counts[u] == 1 {
			own[u] = true
		}
	}
	best, bestScore, tie := -1, 0, false
	for _, i := range cand {
		at := idx[i]
		score := 0
		for j := max(0, at-neighbourhood); j <= min(len(s.order)-1, at+neighbourhood); j++ {
			if own[s.order[j]] {
				score++
			}
		}
		switch {
		case score > bestScore:
			best, bestScore, tie = i, score, false
		case score == bestScore && score > 0:
			tie = true
		}
	}
	if best < 0 || tie {
		why := "none of them lies among the patched unit's other symbols"
		if tie {
			why = "several of them lie equally close to the patched unit's other symbols"
		}
		if s.files == nil {
			why += " (give the kernel's unstripped vmlinux and modules, which name the source file of each)"
		}
		return 0, &AmbiguousSymbolError{Name: name, Count: len(idx), Reason: why}
	}
	return uint64(best + 1), nil
}

// HasSourceFiles says whether LoadSourceFiles read a vmlinux.
func (s *Symbols) HasSourceFiles() bool { return s.files != nil }

// keptModuleSymbols are the symbols of a module the kernel keeps in its
// kallsyms, in symbol table order: named, defined in an allocated section
// that stays after init. fileOf gives each one's source file (globalFile
// for a global or weak one), and files says whether the table has
// STT_FILE symbols at all: a module is linked with ld -r, which keeps
// each object's STT_FILE symbol ahead of its local symbols, as in
// vmlinux, but Debian's installed modules are stripped of them (the
// -dbg package's copies keep them).
func keptModuleSymbols(f *elf.File, syms []elf.Symbol) (kept []elf.Symbol, fileOf []string, files bool) {
	file := ""
	for _, sym := range syms {
		typ := elf.ST_TYPE(sym.Info)
		if typ == elf.STT_FILE {
			file, files = path.Base(sym.Name), true
			continue
		}
		if sym.Name == "" || typ == elf.STT_SECTION ||
			sym.Section == elf.SHN_UNDEF || sym.Section >= elf.SHN_LORESERVE || int(sym.Section) >= len(f.Sections) {
			continue
		}
		sec := f.Sections[sym.Section]
		if sec.Flags&elf.SHF_ALLOC == 0 || strings.HasPrefix(sec.Name, ".init") {
			continue
		}
		kept = append(kept, sym)
		if b := elf.ST_BIND(sym.Info); b == elf.STB_GLOBAL || b == elf.STB_WEAK {
			fileOf = append(fileOf, globalFile)
		} else {
			fileOf = append(fileOf, file)
		}
	}
	return kept, fileOf, files
}

// setFiles records the source file of every copy of a repeated name,
// from fileOf, which follows order.
func (s *Symbols) setFiles(fileOf []string) {
	s.files = map[int]string{}
	for _, idx := range s.at {
		for _, i := range idx {
			s.files[i] = fileOf[i]
		}
	}
}

// LoadModuleSourceFiles reads the source files of a module's repeated
// static names from its unstripped copy (the -dbg package's
// /usr/lib/debug/lib/modules/<release>/...), for Symbols that
// LoadModuleSymbols read from the installed module, whose STT_FILE
// symbols strip removed. Stripping keeps the order of the other
// symbols, so the copies' tables must list the same names in the same
// order, or the load fails and nothing is recorded.
func (s *Symbols) LoadModuleSourceFiles(debugKo []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("klpgen: load module source files: %w: %v", ErrMalformed, r)
		}
	}()
	f, err := openELF(debugKo)
	if err != nil {
		return fmt.Errorf("klpgen: load module source files: %w", err)
	}
	syms, err := f.Symbols()
	if err != nil {
		return fmt.Errorf("klpgen: load module source files: %w: %v", ErrMalformed, err)
	}
	kept, fileOf, files := keptModuleSymbols(f, syms)
	if !files {
		return fmt.Errorf("klpgen: load module source files: %w: the unstripped module has no STT_FILE symbols", ErrMalformed)
	}
	if len(kept) != len(s.order) {
		return fmt.Errorf("klpgen: load module source files: %w: the unstripped module keeps %d symbols and the installed one %d: is it the same build?",
			ErrMalformed, len(kept), len(s.order))
	}
	for i, sym := range kept {
		if sym.Name != s.order[i] {
			return fmt.Errorf("klpgen: load module source files: %w: symbol %d is %s in the unstripped module and %s in the installed one: is it the same build?",
				ErrMalformed, i, sym.Name, s.order[i])
		}
	}
	s.setFiles(fileOf)
	return nil
}

// Definer is what Position knows of the compilation unit whose symbol
// it places.
type Definer struct {
	// Names are the unit's functions and variables.
	Names []string
	// File is the base name of the unit's source file, as its object's
	// STT_FILE symbol gives it ("" when the object has none).
	File string
	// Global says the symbol is a global: one the unit defines, or links
	// against. A static one is the unit's own.
	Global bool
}

// Exported reports whether vmlinux exports name.
func (s *Symbols) Exported(name string) bool {
	_, ok := s.exports[name]
	return ok
}

// Namespace is the symbol namespace of an exported symbol, "" if none.
func (s *Symbols) Namespace(name string) string { return s.exports[name] }

// ExportedByModule reports which module exports name, per
// Module.symvers; ok is false when no module does, or when two modules
// claim the name (which one a module links against cannot be told).
func (s *Symbols) ExportedByModule(name string) (e ModuleExport, ok bool) {
	e, ok = s.modExports[name]
	return e, ok && e.Module != ""
}

// Depends are the modules a module depends on, from the "depends" of its
// .modinfo (kernel names, "_" for "-"): the modules whose exports its
// code links against, which the kernel loads before it. Nil for vmlinux.
func (s *Symbols) Depends() []string { return slices.Clone(s.depends) }

// ImportsNamespace reports whether a module's .modinfo imports the
// symbol namespace ns ("import_ns").
func (s *Symbols) ImportsNamespace(ns string) bool { return slices.Contains(s.imports, ns) }

// GlobalPosition is the kallsyms position in a module of the global
// definition of name, for a name its symbol table carries more than
// once (a static of another unit of the module shares it): the kernel's
// lookup counts the module's symbols in symbol table order. ok is false
// when no global symbol, or several, carry the name.
func (s *Symbols) GlobalPosition(name string) (pos uint64, ok bool) {
	pos, ok = s.globalAt[name]
	return pos, ok && pos > 0
}

// Count is how many vmlinux symbols carry name.
func (s *Symbols) Count(name string) int { return s.counts[name] }

// Len is the number of vmlinux symbols read from the System.map.
func (s *Symbols) Len() int { return s.total }

// LoadSymbols reads a kernel's Module.symvers and System.map. Only
// vmlinux entries are kept: exports of modules, and module symbols in a
// /proc/kallsyms ("addr type name [module]"), are skipped. Each input is
// bounded (64 MiB, lines of 4 KiB) and every line is checked; the error
// names the input and the line.
//
// Debian ships a one-line placeholder System.map in the image package
// (the real one is in linux-image-<release>-dbg); it is refused with an
// error saying so. The target's /proc/kallsyms, read as root, is an
// exact substitute: it lists the symbols in the order livepatch counts
// them.
func LoadSymbols(moduleSymvers, systemMap io.Reader) (*Symbols, error) {
	s := &Symbols{exports: map[string]string{}, counts: map[string]int{}, modExports: map[string]ModuleExport{}}
	if err := eachLine(moduleSymvers, "Module.symvers", s.addExport); err != nil {
		return nil, err
	}
	if len(s.exports) == 0 {
		return nil, fmt.Errorf("klpgen: load symbols: Module.symvers: %w: no symbols exported by vmlinux", ErrMalformed)
	}
	if err := eachLine(systemMap, "System.map", s.addSymbol); err != nil {
		return nil, err
	}
	if s.total == 0 {
		return nil, fmt.Errorf("klpgen: load symbols: System.map: %w: no vmlinux symbols", ErrMalformed)
	}
	s.indexRepeats()
	return s, nil
}

// eachLine calls fn for each non-empty line of r, bounded in size.
func eachLine(r io.Reader, what string, fn func(string) error) error {
	lr := &io.LimitedReader{R: r, N: maxSymbolsInput + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, maxSymbolsLine), maxSymbolsLine)
	tooLarge := func() error {
		return fmt.Errorf("klpgen: load symbols: %s: %w: more than %d bytes", what, ErrTooLarge, maxSymbolsInput)
	}
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := fn(line); err != nil {
			if lr.N <= 0 {
				return tooLarge() // the line was cut at the limit
			}
			return fmt.Errorf("klpgen: load symbols: %s line %d: %w", what, n, err)
		}
	}
	if lr.N <= 0 {
		return tooLarge()
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("klpgen: load symbols: %s line %d: %w: longer than %d bytes", what, n+1, ErrMalformed, maxSymbolsLine)
		}
		return fmt.Errorf("klpgen: load symbols: %s: %w", what, err)
	}
	return nil
}

// addExport reads a Module.symvers line as written since Linux 5.10:
// "0xCRC<TAB>name<TAB>module<TAB>EXPORT_SYMBOL[_GPL]<TAB>namespace".
func (s *Symbols) addExport(line string) error {
	f := strings.Split(line, "\t")
	if len(f) < 4 || len(f) > 5 {
		return malformed("want 4 or 5 tab-separated fields (crc, name, module, export type, namespace), got %d", len(f))
	}
	if !strings.HasPrefix(f[0], "0x") {
		return malformed("crc %q does not start with 0x", f[0])
	}
	if _, err := strconv.ParseUint(f[0][2:], 16, 32); err != nil {
		return malformed("crc %q is not a 32-bit hex number", f[0])
	}
	if !strings.HasPrefix(f[3], "EXPORT_SYMBOL") {
		// Linux 5.4-5.9 put the namespace third; refuse rather than
		// misread it.
		return malformed("export type %q (want EXPORT_SYMBOL...: is this a Module.symvers from Linux 5.10 or later?)", f[3])
	}
	if err := checkSymbolName(f[1]); err != nil {
		return err
	}
	ns := ""
	if len(f) == 5 {
		ns = f[4]
	}
	if f[2] != "vmlinux" {
		// "fs/fat/fat": the module's path in the build, without .ko.
		mod := KernelModuleName(path.Base(f[2]))
		if mod == "" || mod == "." || mod == "/" {
			return malformed("module %q of export %s", f[2], f[1])
		}
		if prev, seen := s.modExports[f[1]]; seen && prev.Module != mod {
			s.modExports[f[1]] = ModuleExport{} // two exporters: unusable
			return nil
		}
		s.modExports[f[1]] = ModuleExport{Module: mod, Namespace: ns}
		return nil
	}
	s.exports[f[1]] = ns
	return nil
}

// addSymbol reads a System.map or /proc/kallsyms line: "addr type name",
// with a fourth field "[module]" for module symbols in /proc/kallsyms.
func (s *Symbols) addSymbol(line string) error {
	f := strings.Fields(line)
	if len(f) > 4 && strings.Contains(line, "System.map") {
		return malformed("this is a placeholder, not a System.map (%q): take System.map from the "+
			"linux-image-<release>-dbg package, or the target's /proc/kallsyms read as root", line)
	}
	if len(f) < 3 || len(f) > 4 {
		return malformed("want \"address type name\", got %d fields", len(f))
	}
	if len(f[0]) > 16 {
		return malformed("address %q is longer than 64 bits", f[0])
	}
	if _, err := strconv.ParseUint(f[0], 16, 64); err != nil {
		return malformed("address %q is not hexadecimal", f[0])
	}
	if len(f[1]) != 1 {
		return malformed("symbol type %q is not one letter", f[1])
	}
	if err := checkSymbolName(f[2]); err != nil {
		return err
	}
	if len(f) == 4 {
		if !strings.HasPrefix(f[3], "[") || !strings.HasSuffix(f[3], "]") {
			return malformed("fourth field %q is not a [module]", f[3])
		}
		return nil // a module's symbol
	}
	addr, _ := strconv.ParseUint(f[0], 16, 64)
	s.counts[f[2]]++
	s.total++
	s.order = append(s.order, f[2])
	s.addr = append(s.addr, addr)
	return nil
}

// indexRepeats records where the names that occur more than once are.
func (s *Symbols) indexRepeats() {
	s.at = map[string][]int{}
	for i, name := range s.order {
		if s.counts[name] > 1 {
			s.at[name] = append(s.at[name], i)
		}
	}
}

func checkSymbolName(name string) error {
	if name == "" || len(name) > maxSymbolName {
		return malformed("symbol name of %d bytes (want 1 to %d)", len(name), maxSymbolName)
	}
	return nil
}

// KernelModuleName is a module's name as the kernel knows it: kbuild's
// name with "-" written "_" (the kernel treats them alike).
func KernelModuleName(name string) string { return strings.ReplaceAll(name, "-", "_") }

// LoadModuleSymbols reads the symbols of a kernel module (its .ko, as
// the linux-image package installs it under /lib/modules): the ones the
// kernel keeps in the loaded module's kallsyms, in their order there,
// which is the symbol table's. Those are the named symbols defined in
// sections that stay after the module's init (not .init.*, not
// unallocated), so positions count as the kernel's lookup counts. It
// reads the module's .modinfo too: the modules it depends on and the
// namespaces it imports ([Symbols.Depends], [Symbols.ImportsNamespace]).
func LoadModuleSymbols(ko []byte) (_ *Symbols, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("klpgen: load module symbols: %w: %v", ErrMalformed, r)
		}
	}()
	f, err := openELF(ko)
	if err != nil {
		return nil, fmt.Errorf("klpgen: load module symbols: %w", err)
	}
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("klpgen: load module symbols: %w: %v", ErrMalformed, err)
	}
	s := &Symbols{exports: map[string]string{}, counts: map[string]int{}, globalAt: map[string]uint64{}}
	if err := s.readModinfo(ko, f); err != nil {
		return nil, fmt.Errorf("klpgen: load module symbols: %w", err)
	}
	globals := map[string][]uint64{} // name -> positions of its global definitions
	kept, fileOf, files := keptModuleSymbols(f, syms)
	for i, sym := range kept {
		if err := checkSymbolName(sym.Name); err != nil {
			return nil, err
		}
		s.counts[sym.Name]++
		s.total++
		s.order = append(s.order, sym.Name)
		if fileOf[i] == globalFile {
			globals[sym.Name] = append(globals[sym.Name], uint64(s.counts[sym.Name]))
		}
	}
	if s.total == 0 {
		return nil, fmt.Errorf("klpgen: load module symbols: %w: no symbols (a stripped module?)", ErrMalformed)
	}
	for name, at := range globals {
		if len(at) == 1 {
			s.globalAt[name] = at[0]
		}
	}
	s.indexRepeats()
	if files {
		s.setFiles(fileOf)
	}
	return s, nil
}

// maxModinfo bounds a module's .modinfo section (a few hundred bytes in
// practice: license, aliases, depends, vermagic).
const maxModinfo = 1 << 20

// readModinfo reads the "depends=" and "import_ns=" entries of a
// module's .modinfo, NUL-separated "key=value" strings.
func (s *Symbols) readModinfo(ko []byte, f *elf.File) error {
	sec := f.Section(".modinfo")
	if sec == nil || sec.Type == elf.SHT_NOBITS {
		return nil // a module with no dependencies may still have one; an object has none
	}
	if sec.Size > maxModinfo {
		return fmt.Errorf(".modinfo: %w: %d bytes", ErrTooLarge, sec.Size)
	}
	b, err := sectionBytes(ko, sec)
	if err != nil {
		return err
	}
	for _, entry := range strings.Split(string(b), "\x00") {
		key, value, ok := strings.Cut(entry, "=")
		if !ok {
			continue
		}
		switch key {
		case "depends":
			for _, d := range strings.Split(value, ",") {
				if d == "" {
					continue
				}
				if err := validKLPSymbol(KLPSymbol{Object: KernelModuleName(d), Name: "x"}); err != nil {
					return malformed(".modinfo: depends names %q", d)
				}
				s.depends = append(s.depends, KernelModuleName(d))
			}
		case "import_ns":
			if value == "" || hasSpaceOrControl(value) {
				return malformed(".modinfo: import_ns %q", value)
			}
			s.imports = append(s.imports, value)
		}
	}
	return nil
}
