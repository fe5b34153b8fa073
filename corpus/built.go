package corpus

import (
	"bufio"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Vmlinux is the object name Built uses for the kernel image itself.
const Vmlinux = "vmlinux"

// Built says, per source file of the kernel tree, which objects the target
// configuration compiled it into: "vmlinux" or a module's name. A .c file
// is built when it is a compilation unit of an object's DWARF debug info;
// a header when an object's line tables name it (it gave some code or a
// declaration to a built unit). That is kbuild's own answer for this
// kernel, read from what it produced, rather than the Makefiles' rules
// re-derived.
type Built map[string][]string

// Objects returns the objects any of files is built into, sorted, with
// vmlinux first.
func (b Built) Objects(files []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		for _, o := range b[f] {
			if !seen[o] {
				seen[o] = true
				out = append(out, o)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i] == Vmlinux) != (out[j] == Vmlinux) {
			return out[i] == Vmlinux
		}
		return out[i] < out[j]
	})
	return out
}

// ErrDebugInfo is returned when an object's debug info cannot be read.
var ErrDebugInfo = errors.New("debug info")

// IndexDebugInfo builds the index from an unpacked -dbg package: the
// vmlinux at dbgRoot/usr/lib/debug/boot/vmlinux-RELEASE and every module
// under dbgRoot/usr/lib/debug/lib/modules/RELEASE. Paths in the debug info
// are taken relative to the source tree src (the build folder's prefix is
// dropped: the longest tail of the path that names a file of src).
func IndexDebugInfo(dbgRoot, release, src string) (Built, error) {
	b := Built{}
	res := newResolver(src)
	vmlinux := filepath.Join(dbgRoot, "usr", "lib", "debug", "boot", "vmlinux-"+release)
	if err := b.addObject(vmlinux, Vmlinux, res); err != nil {
		return nil, err
	}
	mods := filepath.Join(dbgRoot, "usr", "lib", "debug", "lib", "modules", release)
	err := filepath.WalkDir(mods, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return nil
		}
		name := strings.ReplaceAll(strings.TrimSuffix(d.Name(), ".ko"), "-", "_")
		return b.addObject(p, name, res)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDebugInfo, err)
	}
	return b, nil
}

// addObject adds the compilation units and line-table files of one object.
func (b Built) addObject(file, object string, res *resolver) error {
	f, err := elf.Open(file)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDebugInfo, err)
	}
	defer func() { _ = f.Close() }()
	d, err := f.DWARF()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDebugInfo, file, err)
	}
	info := f.Section(".debug_info")
	if info == nil {
		return fmt.Errorf("%w: %s has no .debug_info", ErrDebugInfo, file)
	}
	raw, err := info.Data()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDebugInfo, file, err)
	}
	seen := map[string]bool{}
	add := func(name, dir string) {
		if name == "" {
			return
		}
		if !path.IsAbs(name) && dir != "" {
			name = path.Join(dir, name)
		}
		if p := res.resolve(path.Clean(name)); p != "" && !seen[p] {
			seen[p] = true
			b[p] = append(b[p], object)
		}
	}
	r := d.Reader()
	// Walk the unit headers (length, then the rest), reading only each
	// unit's first entry and line table: the units' trees are not read.
	for off := uint64(0); off+4 <= uint64(len(raw)); {
		length := uint64(binary.LittleEndian.Uint32(raw[off:]))
		hdr := uint64(4)
		if length == 0xffffffff {
			if off+12 > uint64(len(raw)) {
				break
			}
			length, hdr = binary.LittleEndian.Uint64(raw[off+4:]), 12
		}
		if off+hdr+2 > uint64(len(raw)) {
			break
		}
		// The unit's first entry follows its header: version, (DWARF 5:
		// unit type, address size,) abbreviation offset (, address size).
		first := off + hdr + 2 + 4 + 1
		if binary.LittleEndian.Uint16(raw[off+hdr:]) >= 5 {
			first = off + hdr + 2 + 1 + 1 + 4
		}
		off += hdr + length
		r.Seek(dwarf.Offset(first))
		e, err := r.Next()
		if err != nil {
			return fmt.Errorf("%w: %s: unit at %#x: %v", ErrDebugInfo, file, first, err)
		}
		if e == nil || e.Tag != dwarf.TagCompileUnit {
			continue
		}
		dir, _ := e.Val(dwarf.AttrCompDir).(string)
		name, _ := e.Val(dwarf.AttrName).(string)
		add(name, dir)
		lr, err := d.LineReader(e)
		if err != nil || lr == nil {
			continue
		}
		for _, lf := range lr.Files() {
			if lf != nil {
				add(lf.Name, dir)
			}
		}
	}
	return nil
}

// resolver maps a path of the build machine to a path of the source tree.
type resolver struct {
	src   string
	cache map[string]string // build-side path -> tree path ("" none)
}

func newResolver(src string) *resolver {
	return &resolver{src: src, cache: map[string]string{}}
}

func (r *resolver) resolve(p string) string {
	if v, ok := r.cache[p]; ok {
		return v
	}
	out := ""
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i := range parts {
		rel := strings.Join(parts[i:], "/")
		if rel == "" || strings.HasPrefix(rel, "../") {
			continue
		}
		if fi, err := os.Stat(filepath.Join(r.src, filepath.FromSlash(rel))); err == nil && fi.Mode().IsRegular() {
			out = rel
			break
		}
	}
	r.cache[p] = out
	return out
}

// WriteTo writes the index as lines "PATH\tOBJECT[,OBJECT...]", sorted.
func (b Built) WriteTo(w io.Writer) (int64, error) {
	paths := make([]string, 0, len(b))
	for p := range b {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	bw := bufio.NewWriter(w)
	var n int64
	for _, p := range paths {
		k, err := fmt.Fprintf(bw, "%s\t%s\n", p, strings.Join(b[p], ","))
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, bw.Flush()
}

// ReadBuilt reads an index WriteTo wrote.
func ReadBuilt(r io.Reader) (Built, error) {
	b := Built{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		p, objs, ok := strings.Cut(sc.Text(), "\t")
		if !ok || p == "" || objs == "" {
			return nil, fmt.Errorf("built index: line %d: want PATH<TAB>OBJECTS", n)
		}
		b[p] = strings.Split(objs, ",")
	}
	return b, sc.Err()
}
