package objdiff

import (
	"debug/dwarf"
	"fmt"
	"path"
)

// A struct or union whose layout changed is refused (layouts, in
// compare.go) unless the unit's own stacks are all that hold it. This
// file reads, from DWARF, what that takes:
//
//   - the type is defined in the compiled .c file itself, not in a
//     header (DW_AT_decl_file names the unit's own file), so no other
//     unit knows its layout;
//   - no variable of static storage (global, file or function static)
//     has a type that mentions it, by value, pointer or array, and no
//     member of any struct or union does (so a variable that nests it
//     is caught at the member);
//   - it is held only by value, in local variables of automatic
//     storage (at least one), and through pointer parameters of static
//     functions: never through a pointer local variable (it could come
//     from the heap), a parameter of a global function or of a
//     function type, or as a return type.
//
// Each object is read on its own; [Compare] requires both to qualify.

// typeUses is how one struct or union is held in an object.
type typeUses struct {
	// locals counts the local variables that hold it by value.
	locals int
	// refused is the first use that is none of the above, "" if none.
	refused string
}

// scope is an entry that encloses others: its tag, the name of a
// function or type, and whether a function is global.
type scope struct {
	tag      dwarf.Tag
	name     string
	external bool
}

// mention is what a type refers to: the struct or union at the end of
// its chain of typedefs, qualifiers, pointers and arrays, and how.
type mention struct {
	key      string // "struct lb_env", "" if none
	pointers int
	array    bool
}

// maxMentionHops bounds the chain of a type that mention follows.
const maxMentionHops = 32

// DWARF location operations that name static storage.
const (
	dwOpAddr            = 0x03
	dwOpAddrx           = 0xa1
	dwOpGNUAddrIndex    = 0xfb
	dwOpFormTLSAddress  = 0x9b
	dwOpGNUPushTLSAddr  = 0xe0
	dwTagGNUCallSite    = 0x4109
	dwTagGNUCallSiteArg = 0x410a
)

func (w *walker) scopeOf(e *dwarf.Entry) scope {
	s := scope{tag: e.Tag}
	s.name, _ = e.Val(dwarf.AttrName).(string)
	if s.name == "" && (e.Tag == dwarf.TagSubprogram || e.Tag == dwarf.TagInlinedSubroutine) {
		if o, err := w.origin(e); err == nil {
			s.name, _ = o.Val(dwarf.AttrName).(string)
		}
	}
	s.name = printable(s.name)
	s.external, _ = e.Val(dwarf.AttrExternal).(bool)
	if !s.external && e.Tag == dwarf.TagSubprogram {
		if o, err := w.origin(e); err == nil {
			s.external, _ = o.Val(dwarf.AttrExternal).(bool)
		}
	}
	return s
}

// home records where a struct or union of the unit is defined.
func (w *walker) home(key string, e *dwarf.Entry) {
	where := "a file the line table does not name"
	if i, ok := e.Val(dwarf.AttrDeclFile).(int64); ok && i >= 0 && i < int64(len(w.files)) && w.files[i] != nil {
		name := w.files[i].Name
		where = printable(path.Clean(name))
		if w.own != "" && w.sourcePath(name) == w.own {
			where = ""
		}
	}
	if old, ok := w.info.homes[key]; !ok || old == "" {
		w.info.homes[key] = where
	}
}

// mentionOf follows a type to the struct or union it refers to.
func (w *walker) mentionOf(off dwarf.Offset) (mention, error) {
	if m, ok := w.mentions[off]; ok {
		return m, nil
	}
	var m mention
	at := off
	for hop := 0; ; hop++ {
		if hop == maxMentionHops {
			w.info.unread = fmt.Sprintf("a type is a chain of more than %d typedefs, qualifiers, pointers and arrays", maxMentionHops)
			m = mention{}
			break
		}
		e, err := w.entry(at)
		if err != nil {
			return mention{}, err
		}
		next, ok := e.Val(dwarf.AttrType).(dwarf.Offset)
		switch e.Tag {
		case dwarf.TagTypedef, dwarf.TagConstType, dwarf.TagVolatileType, dwarf.TagRestrictType, dwarf.TagAtomicType:
		case dwarf.TagPointerType, dwarf.TagReferenceType, dwarf.TagRvalueReferenceType:
			m.pointers++
		case dwarf.TagArrayType:
			m.array = true
		case dwarf.TagStructType, dwarf.TagUnionType:
			if name, _ := e.Val(dwarf.AttrName).(string); name != "" {
				m.key = "struct " + printable(name)
				if e.Tag == dwarf.TagUnionType {
					m.key = "union " + printable(name)
				}
			}
			ok = false
		default:
			ok = false
		}
		if !ok {
			break
		}
		at = next
	}
	if m.key == "" {
		m = mention{}
	}
	w.mentions[off] = m
	return m, nil
}

// use records how an entry that has a type holds the struct or union
// its type mentions.
func (w *walker) use(e *dwarf.Entry) error {
	switch e.Tag {
	case dwarf.TagTypedef, dwarf.TagPointerType, dwarf.TagConstType, dwarf.TagVolatileType, dwarf.TagRestrictType,
		dwarf.TagAtomicType, dwarf.TagArrayType, dwarf.TagSubrangeType, dwarf.TagEnumerationType, dwarf.TagBaseType,
		dwarf.TagReferenceType, dwarf.TagRvalueReferenceType, dwarf.TagPtrToMemberType, dwarf.TagUnspecifiedType,
		dwarf.TagCallSite, dwarf.TagCallSiteParameter, dwTagGNUCallSite, dwTagGNUCallSiteArg, dwarf.TagLabel:
		// Types are made of types; a use is what holds one.
		return nil
	}
	typed := e
	off, ok := e.Val(dwarf.AttrType).(dwarf.Offset)
	if !ok && e.Tag == dwarf.TagVariable {
		// A concrete or defining entry of a variable names its type
		// through its abstract origin or declaration.
		o, err := w.origin(e)
		if err != nil {
			return err
		}
		typed = o
		off, ok = o.Val(dwarf.AttrType).(dwarf.Offset)
	}
	if !ok {
		return nil
	}
	m, err := w.mentionOf(off)
	if err != nil || m.key == "" {
		return err
	}
	u := w.info.uses[m.key]
	if u == nil {
		u = &typeUses{}
		w.info.uses[m.key] = u
	}
	name, _ := typed.Val(dwarf.AttrName).(string)
	name = printable(name)
	var parent scope
	if n := len(w.scopes); n > 0 {
		parent = w.scopes[n-1]
	}
	fn := ""
	for i := len(w.scopes) - 1; i >= 0 && fn == ""; i-- {
		if w.scopes[i].tag == dwarf.TagSubprogram {
			fn = w.scopes[i].name
			if fn == "" {
				fn = "a function"
			}
		}
	}
	refuse := func(format string, args ...any) {
		if u.refused == "" {
			u.refused = fmt.Sprintf(format, args...)
		}
	}
	how := "through a pointer to a pointer or an array"
	switch {
	case m.pointers == 0 && !m.array:
		how = "by value"
	case m.pointers == 1 && !m.array:
		how = "through a pointer"
	}
	switch e.Tag {
	case dwarf.TagVariable:
		external, _ := e.Val(dwarf.AttrExternal).(bool)
		if ext, _ := typed.Val(dwarf.AttrExternal).(bool); ext {
			external = true
		}
		switch {
		case fn == "" || external || staticLocation(e):
			refuse("variable %s of static storage holds it %s", name, how)
		case how == "by value":
			u.locals++
		case how == "through a pointer":
			refuse("local variable %s of %s points to it, and may point to an object on the heap", name, fn)
		default:
			refuse("local variable %s of %s holds it %s", name, fn, how)
		}
	case dwarf.TagFormalParameter:
		switch {
		case parent.tag == dwarf.TagSubroutineType:
			refuse("a function type's parameter holds it %s", how)
		case how != "through a pointer":
			refuse("parameter %s of %s holds it %s", name, fn, how)
		case parent.external:
			refuse("parameter %s of %s points to it, and %s is global: other units may call it", name, fn, fn)
		}
	case dwarf.TagMember:
		refuse("member %s of %s holds it %s", name, typeScope(parent), how)
	case dwarf.TagSubprogram:
		refuse("function %s returns it %s", w.scopeOf(e).name, how)
	case dwarf.TagSubroutineType:
		refuse("a function type returns it %s", how)
	default:
		refuse("a DWARF %v entry holds it %s", e.Tag, how)
	}
	return nil
}

func typeScope(s scope) string {
	kind := "struct"
	if s.tag == dwarf.TagUnionType {
		kind = "union"
	}
	if s.name == "" {
		return "an anonymous " + kind
	}
	return kind + " " + s.name
}

// staticLocation reports whether a variable's location is an address
// the linker fills in: static storage, or thread-local.
func staticLocation(e *dwarf.Entry) bool {
	b, ok := e.Val(dwarf.AttrLocation).([]byte)
	if !ok || len(b) == 0 {
		return false
	}
	switch b[0] {
	case dwOpAddr, dwOpAddrx, dwOpGNUAddrIndex:
		return true
	}
	last := b[len(b)-1]
	return last == dwOpFormTLSAddress || last == dwOpGNUPushTLSAddr
}

// stackOnly returns "" if only the unit's own stacks hold the struct or
// union key, and says why not otherwise.
func (d *debugInfo) stackOnly(key string) string {
	switch home, ok := d.homes[key]; {
	case d.unread != "":
		return "its uses could not all be read: " + d.unread
	case !ok:
		return "no definition of it was read"
	case home != "":
		return "it is defined in " + home + ", not in the compiled file itself, so other units may hold it"
	}
	u := d.uses[key]
	switch {
	case u != nil && u.refused != "":
		return u.refused
	case u == nil || u.locals == 0:
		return "no local variable holds it by value, so its objects come from elsewhere"
	}
	return ""
}
