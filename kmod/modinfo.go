package kmod

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"strings"

	"github.com/splicefleet/splicefleet/internal/elf64"
)

// MaxModuleSize is the largest module, in bytes, that ReadModInfo accepts.
const MaxModuleSize = 64 << 20

// Errors callers test with errors.Is.
var (
	// ErrNotModule means the input is not an ELF kernel module, or is a
	// malformed one.
	ErrNotModule = errors.New("not a kernel module")
	// ErrNotLivepatch means the input is a valid kernel module that does
	// not declare MODULE_INFO(livepatch, "Y").
	ErrNotLivepatch = errors.New("not a livepatch module")
	// ErrTooLarge means the input is larger than MaxModuleSize.
	ErrTooLarge = errors.New("module too large")
)

// ModInfo is what a kernel module says about itself in its .modinfo section.
//
// For keys that the kernel reads as single values (name, vermagic,
// livepatch, license, srcversion, depends) the first occurrence wins, as in
// the kernel's own lookup; Fields keeps every occurrence.
type ModInfo struct {
	Name       string              `json:"name"`                 // "name" key (falls back to struct module's name)
	Vermagic   string              `json:"vermagic"`             // "vermagic"
	Release    string              `json:"release"`              // kernel release: first field of vermagic, e.g. "6.1.0-56-cloud-amd64"
	Livepatch  bool                `json:"livepatch"`            // "livepatch" == "Y"
	License    string              `json:"license"`              // "license"
	Depends    []string            `json:"depends,omitempty"`    // "depends", comma separated, empty entries dropped; nil if none
	SrcVersion string              `json:"srcversion,omitempty"` // "srcversion"
	Fields     map[string][]string `json:"fields"`               // every key -> values in order (keys may repeat, e.g. alias)
	Functions  []string            `json:"functions,omitempty"`  // functions the livepatch replaces (klp_func old_name); sorted, unique; nil if none found
	Arch       string              `json:"arch"`                 // from the ELF header: "x86_64", "aarch64", ...
}

// RequireLivepatch returns an error wrapping ErrNotLivepatch unless the
// module declares MODULE_INFO(livepatch, "Y").
func (m *ModInfo) RequireLivepatch() error {
	if m.Livepatch {
		return nil
	}
	return fmt.Errorf("kmod: require livepatch: module %q is %w (no MODULE_INFO(livepatch, \"Y\"))", m.Name, ErrNotLivepatch)
}

// ReadModInfo parses the metadata of a relocatable kernel module (.ko).
//
// module must be the complete file contents, already checked against a
// trusted digest. It is still parsed defensively: input larger than
// MaxModuleSize is refused with ErrTooLarge, every section read is bounded
// by the input, and a panic inside the ELF parser becomes an ErrNotModule
// error. A valid module that is not a livepatch module is not an error
// here; use RequireLivepatch.
func ReadModInfo(module []byte) (info *ModInfo, err error) {
	if len(module) > MaxModuleSize {
		return nil, fmt.Errorf("kmod: read module info: check size: %w: %d bytes, limit %d", ErrTooLarge, len(module), MaxModuleSize)
	}
	defer func() {
		if r := recover(); r != nil {
			info = nil
			err = fmt.Errorf("kmod: read module info: parse elf: %w: malformed file (parser panic: %v)", ErrNotModule, r)
		}
	}()
	return readModInfo(module)
}

// stepError builds the error of a failed step; err should wrap a sentinel.
func stepError(step string, err error) error {
	return fmt.Errorf("kmod: read module info: %s: %w", step, err)
}

func notModule(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotModule}, args...)...)
}

// moduleOptions is what ReadModInfo accepts of an ELF64 little-endian
// module: a relocatable file of any machine, so that a module built for
// another architecture is read and names it (ModInfo.Arch).
var moduleOptions = elf64.Options{Limits: elf64.Limits{MaxSize: MaxModuleSize}}

// openModule checks and parses the headers of a module with
// internal/elf64. A module of another class or byte order (a 32-bit or
// big-endian one) is parsed without the ELF64 header check, only to read
// its .modinfo and name its architecture; every section read is bounded
// all the same (sectionBytes). ReadModInfo has checked the size.
func openModule(module []byte) (*elf.File, error) {
	foreign := len(module) >= elf.EI_NIDENT && bytes.HasPrefix(module, []byte(elf.ELFMAG)) &&
		(elf.Class(module[elf.EI_CLASS]) != elf.ELFCLASS64 || elf.Data(module[elf.EI_DATA]) != elf.ELFDATA2LSB)
	if foreign {
		f, err := elf64.Parse(module)
		if err != nil {
			return nil, stepError("open elf", elfError(err))
		}
		if f.Type != elf.ET_REL {
			return nil, stepError("check elf type", notModule("elf type %v, want ET_REL", f.Type))
		}
		return f, nil
	}
	f, err := elf64.Open(module, moduleOptions)
	if err != nil {
		return nil, stepError("open elf", elfError(err))
	}
	return f, nil
}

// elfError gives an error of internal/elf64 this package's sentinel.
func elfError(err error) error {
	var e *elf64.Error
	if !errors.As(err, &e) {
		return notModule("%v", err)
	}
	return e.Wrap(ErrNotModule)
}

func readModInfo(module []byte) (*ModInfo, error) {
	f, err := openModule(module)
	if err != nil {
		return nil, err
	}

	modinfoSec := f.Section(".modinfo")
	if modinfoSec == nil {
		return nil, stepError("check sections", notModule("no .modinfo section"))
	}
	thisModule := f.Section(".gnu.linkonce.this_module")
	if thisModule == nil {
		return nil, stepError("check sections", notModule("no .gnu.linkonce.this_module section"))
	}

	raw, err := sectionBytes(module, &modinfoSec.SectionHeader)
	if err != nil {
		return nil, stepError("read .modinfo", err)
	}
	fields, err := parseModInfo(raw)
	if err != nil {
		return nil, stepError("parse .modinfo", err)
	}

	info := &ModInfo{
		Fields:     fields,
		Name:       first(fields, "name"),
		Vermagic:   first(fields, "vermagic"),
		Livepatch:  first(fields, "livepatch") == "Y",
		License:    first(fields, "license"),
		SrcVersion: first(fields, "srcversion"),
		Arch:       archName(f),
	}
	if r := strings.Fields(info.Vermagic); len(r) > 0 {
		info.Release = r[0]
	}
	for _, d := range strings.Split(first(fields, "depends"), ",") {
		if d = strings.TrimSpace(d); d != "" {
			info.Depends = append(info.Depends, d)
		}
	}
	if info.Name == "" {
		// Kernels before 5.x did not emit name=; struct module has it.
		info.Name = thisModuleName(module, f, &thisModule.SectionHeader)
	}
	if info.Name == "" {
		return nil, stepError("read module name", notModule("no name in .modinfo or .gnu.linkonce.this_module"))
	}
	info.Functions = livepatchFunctions(module, f)
	return info, nil
}

// parseModInfo splits the contents of a .modinfo section into key/value
// pairs. Entries are NUL-terminated "key=value" strings; runs of NULs
// (alignment padding) are skipped. The last entry may lack its NUL.
func parseModInfo(data []byte) (map[string][]string, error) {
	fields := make(map[string][]string)
	for len(data) > 0 {
		entry := data
		if i := bytes.IndexByte(data, 0); i >= 0 {
			entry, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(entry) == 0 {
			continue
		}
		key, value, ok := bytes.Cut(entry, []byte("="))
		if !ok || len(key) == 0 {
			return nil, notModule("malformed .modinfo entry %q", truncate(entry, 64))
		}
		k := string(key)
		fields[k] = append(fields[k], string(value))
	}
	return fields, nil
}

func first(fields map[string][]string, key string) string {
	if v := fields[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// sectionBytes returns the file contents of a section as a sub-slice of
// module, after checking that the section lies inside the input. It refuses
// sections without file contents and compressed sections (whose
// decompressed size is not bounded by the input).
func sectionBytes(module []byte, sh *elf.SectionHeader) ([]byte, error) {
	if sh.Type == elf.SHT_NOBITS {
		return nil, notModule("section %s has no contents", sh.Name)
	}
	b, err := elf64.SectionBytes(module, sh)
	if err != nil {
		return nil, elfError(err)
	}
	return b, nil
}

// thisModuleName reads the name field of the struct module instance that
// kbuild places in .gnu.linkonce.this_module. On 64-bit kernels the name is
// a NUL-terminated char[56] at offset 24 (after state and the list head).
// It returns "" if it cannot find a plausible name.
func thisModuleName(module []byte, f *elf.File, sh *elf.SectionHeader) string {
	const nameOff, nameLen = 24, 56
	if f.Class != elf.ELFCLASS64 {
		return ""
	}
	data, err := sectionBytes(module, sh)
	if err != nil || len(data) < nameOff+nameLen {
		return ""
	}
	name := data[nameOff : nameOff+nameLen]
	i := bytes.IndexByte(name, 0)
	if i <= 0 {
		return ""
	}
	for _, c := range name[:i] {
		if c <= ' ' || c > '~' {
			return ""
		}
	}
	return string(name[:i])
}

// archName maps the ELF machine to the name uname -m uses.
func archName(f *elf.File) string {
	switch f.Machine {
	case elf.EM_X86_64:
		return "x86_64"
	case elf.EM_AARCH64:
		return "aarch64"
	case elf.EM_386:
		return "i386"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_PPC64:
		if f.Data == elf.ELFDATA2LSB {
			return "ppc64le"
		}
		return "ppc64"
	case elf.EM_S390:
		if f.Class == elf.ELFCLASS64 {
			return "s390x"
		}
		return "s390"
	case elf.EM_RISCV:
		if f.Class == elf.ELFCLASS64 {
			return "riscv64"
		}
		return "riscv32"
	case elf.EM_LOONGARCH:
		return "loongarch64"
	case elf.EM_MIPS:
		return "mips"
	}
	return strings.ToLower(strings.TrimPrefix(f.Machine.String(), "EM_"))
}
