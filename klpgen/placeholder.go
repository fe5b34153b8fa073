package klpgen

import (
	"strconv"
	"strings"
)

// PlaceholderPrefix starts the name of every placeholder symbol in
// patch.o. A placeholder is an ordinary undefined symbol standing for a
// livepatch symbol until Finalize renames it: kbuild and ld carry it
// through like any other undefined symbol, and modpost only warns
// (KBUILD_MODPOST_WARN=1). The prefix cannot clash with a kernel symbol:
// the kernel has none starting with "__klp_sym__".
const PlaceholderPrefix = "__klp_sym__"

// KLPSymbol is a symbol of the running kernel the module finds at load
// time through livepatch: a static function or variable, or an
// unexported global.
type KLPSymbol struct {
	// Object is "vmlinux" or the name of a module.
	Object string
	// Name is the symbol's name in kallsyms, e.g. "saved_command_line".
	Name string
	// Pos is its kallsyms position among symbols of the same name; 0
	// means the name is unique.
	Pos uint64
	// Section is the object whose livepatch relocation sections
	// (.klp.rela.SECTION.*) hold the relocations against the symbol,
	// when it is not Object: a module's new code reaching an export of
	// a module it depends on. The kernel resolves those when it patches
	// Section (kernel/livepatch/core.c klp_resolve_symbols looks the
	// symbol up in Object's kallsyms), and Object is loaded by then
	// because Section depends on it. "" means Object.
	Section string
}

// section is the object whose relocation sections refer to k.
func (k KLPSymbol) section() string {
	if k.Section == "" {
		return k.Object
	}
	return k.Section
}

// Placeholder is the undefined symbol patch.o carries for k:
// "__klp_sym__OBJECT__NAME__POS", e.g. "__klp_sym__vmlinux__jiffies_lock__0",
// and with a Section of its own "__klp_sym__OBJECT__NAME__POS__SECTION"
// ("__klp_sym__fat__fat_fill_super__0__vfat").
// It reads back unambiguously: the object ends at the first "__" (object
// names contain none, see validKLPSymbol); the last field is the
// position when it is all digits, else the section (an object name is
// never all digits), with the position before it; the name, which may
// contain "__" and ".", is what lies between. It is a valid C identifier
// when the name is, which lets tests declare placeholders in C.
func (k KLPSymbol) Placeholder() string {
	p := PlaceholderPrefix + k.Object + "__" + k.Name + "__" + strconv.FormatUint(k.Pos, 10)
	if k.Section != "" {
		p += "__" + k.Section
	}
	return p
}

// String is the livepatch symbol name Finalize gives the placeholder,
// in the format kernel/livepatch/core.c scans:
// ".klp.sym.OBJECT.NAME,POS".
func (k KLPSymbol) String() string {
	return ".klp.sym." + k.Object + "." + k.Name + "," + strconv.FormatUint(k.Pos, 10)
}

// validKLPSymbol checks what livepatch's sscanf(".klp.sym.%55[^.].%511[^,],%lu")
// and the placeholder format need: an object name of 1 to 55 bytes
// without ".", "," or "__" that does not end in "_"; a symbol name of 1
// to 511 bytes without "," or white space.
func validKLPSymbol(k KLPSymbol) error {
	o := k.Object
	if o == "" || len(o) > maxObjectName || strings.ContainsAny(o, ".,") || strings.Contains(o, "__") ||
		strings.HasSuffix(o, "_") || hasSpaceOrControl(o) {
		return invalid("object name %q cannot be a livepatch object name", o)
	}
	if k.Name == "" || len(k.Name) > maxSymbolName || strings.Contains(k.Name, ",") || hasSpaceOrControl(k.Name) {
		return invalid("symbol name %q cannot be a livepatch symbol name", k.Name)
	}
	if k.Section != "" {
		if err := validKLPSymbol(KLPSymbol{Object: k.Section, Name: "x"}); err != nil {
			return err
		}
		if strings.TrimLeft(k.Section, "0123456789") == "" {
			return invalid("object name %q is all digits", k.Section)
		}
		// kernel/livepatch/core.c refuses a vmlinux symbol in a module's
		// section; vmlinux's sections are applied before any module
		// symbol can be found.
		if k.Section == k.Object || k.Section == "vmlinux" || k.Object == "vmlinux" {
			return invalid("symbol %s of %s cannot be reached from the relocation sections of %s", k.Name, k.Object, k.Section)
		}
	}
	return nil
}

func hasSpaceOrControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// parsePlaceholder reads a placeholder name back. ok is false when name
// does not start with PlaceholderPrefix; err is set when it does but is
// not a well-formed placeholder.
func parsePlaceholder(name string) (k KLPSymbol, ok bool, err error) {
	rest, ok := strings.CutPrefix(name, PlaceholderPrefix)
	if !ok {
		return k, false, nil
	}
	obj, rest, found := strings.Cut(rest, "__")
	if !found {
		return k, true, malformed("placeholder %q has no object name", name)
	}
	i := strings.LastIndex(rest, "__")
	if i < 0 {
		return k, true, malformed("placeholder %q has no position", name)
	}
	section := ""
	if last := rest[i+2:]; last != "" && strings.TrimLeft(last, "0123456789") != "" {
		section, rest = last, rest[:i]
		if i = strings.LastIndex(rest, "__"); i < 0 {
			return k, true, malformed("placeholder %q has no position", name)
		}
	}
	digits := rest[i+2:]
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return k, true, malformed("placeholder %q: position %q is not a number", name, digits)
	}
	pos, perr := strconv.ParseUint(digits, 10, 64)
	if perr != nil {
		return k, true, malformed("placeholder %q: position: %v", name, perr)
	}
	k = KLPSymbol{Object: obj, Name: rest[:i], Pos: pos, Section: section}
	if verr := validKLPSymbol(k); verr != nil {
		return k, true, malformed("placeholder %q: %v", name, verr)
	}
	return k, true, nil
}
