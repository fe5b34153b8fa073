package klpgen

import (
	"errors"
	"fmt"
)

// Errors callers test with errors.Is.
var (
	// ErrMalformed means an input (an object file, a module, a
	// Module.symvers or a System.map) is not what it claims to be, or is
	// damaged.
	ErrMalformed = errors.New("malformed input")
	// ErrTooLarge means an input is larger than this package reads.
	ErrTooLarge = errors.New("input too large")
	// ErrInvalidArgument means the caller asked for something impossible:
	// a function the object does not define, a bad module name.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrSigned means Finalize was given a signed module. Finalize
	// rewrites bytes the signature covers: finalize first, then sign.
	ErrSigned = errors.New("module is signed")
)

// UnsupportedError means the new code needs something the generator does
// not support yet (a WARN/BUG entry, an exception-table fixup, an
// alternative, a static key or call, new writable data). Generating a
// module anyway would crash or silently misbehave the kernel, so the
// generator refuses; the fix is in the patch or in the generator, never
// in a retry.
type UnsupportedError struct {
	// Function is the changed or added function concerned ("" if none).
	Function string
	// Section is the section concerned, e.g. "__bug_table".
	Section string
	// Reason says what is not supported.
	Reason string
}

func (e *UnsupportedError) Error() string {
	s := "not supported"
	if e.Function != "" {
		s += ": function " + e.Function
	}
	if e.Section != "" {
		s += ": section " + e.Section
	}
	return s + ": " + e.Reason
}

// AmbiguousSymbolError means a symbol the module must find in the
// running kernel appears more than once in System.map, and which of
// them belongs to the patched unit could not be told (see
// [Symbols.Position]).
type AmbiguousSymbolError struct {
	// Name is the symbol, e.g. "count.0".
	Name string
	// Count is how many vmlinux symbols carry the name.
	Count int
	// Function is the changed or added function that refers to it, or
	// the replaced function itself.
	Function string
	// Reason says why no position was chosen.
	Reason string
	// NeedsSourceFiles says the target's source files (the unstripped
	// vmlinux or module) would have placed it, or Options.PositionsByOrder
	// accepted a judgement by the symbols' order.
	NeedsSourceFiles bool
}

func (e *AmbiguousSymbolError) Error() string {
	return fmt.Sprintf("function %s: symbol %q is ambiguous: %d vmlinux symbols carry the name, and %s",
		e.Function, e.Name, e.Count, e.Reason)
}

// MissingSymbolError means a symbol the new code refers to is neither
// exported (Module.symvers: by vmlinux, or for a module's code by
// another module) nor present in System.map: the module could
// not be linked against the running kernel. A new function should be
// listed as added; new global state is not supported.
type MissingSymbolError struct {
	// Name is the symbol.
	Name string
	// Function is the changed or added function that refers to it, or
	// the replaced function itself.
	Function string
	// Module is the patched module whose symbols were searched too; ""
	// when the patch is to vmlinux.
	Module string
}

func (e *MissingSymbolError) Error() string {
	where := "neither exported by vmlinux nor in System.map"
	if e.Module != "" {
		where = fmt.Sprintf("neither a symbol of module %s, nor exported by vmlinux or another module, nor in System.map", e.Module)
	}
	return fmt.Sprintf("function %s: symbol %q is %s (a new function must be listed as added)", e.Function, e.Name, where)
}

// DependencyError means the new code of a module refers to a symbol
// another module exports, and a livepatch cannot reach it safely: the
// exporting module is not among the modules the patched one depends on
// (the kernel applies the patched module's livepatch relocations when
// that module loads, and only its dependencies are sure to be loaded
// then), or the export's namespace is not one the patched module
// imports.
type DependencyError struct {
	// Name is the symbol.
	Name string
	// Function is the changed or added function that refers to it.
	Function string
	// Module is the patched module.
	Module string
	// Exporter is the module Module.symvers says exports it.
	Exporter string
	// Namespace is the export's namespace, "" for none.
	Namespace string
	// Reason says why it cannot be reached.
	Reason string
}

func (e *DependencyError) Error() string {
	return fmt.Sprintf("function %s: symbol %q is exported by module %s, which the patched module %s cannot reach: %s",
		e.Function, e.Name, e.Exporter, e.Module, e.Reason)
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidArgument}, args...)...)
}
