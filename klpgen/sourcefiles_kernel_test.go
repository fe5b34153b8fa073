package klpgen

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/splicefleet/splicefleet/internal/testutil"
	"github.com/splicefleet/splicefleet/lab"
)

// TestCorpusKernelSourceFiles reads the System.map and the unstripped
// vmlinux of the corpus kernel (Debian's 6.1.0-53-cloud-amd64, from its
// -dbg package). The two static last_cmd of kernel/trace, which
// neighbour each other in .bss so that System.map cannot tell them
// apart, are placed by their files. Then every static symbol that
// System.map lists more than once is placed by its unit, as vmlinux
// groups the units: it must be that very copy. The test reports how often
// the address order alone would have chosen another unit's copy.
func TestCorpusKernelSourceFiles(t *testing.T) {
	k, dbg := corpusDebugInfo(t)
	boot := filepath.Join(dbg, "usr", "lib", "debug", "boot")
	symvers, err := os.Open(filepath.Join(k.HeadersDir, "Module.symvers"))
	if err != nil {
		t.Fatal(err)
	}
	defer symvers.Close()
	sysmap, err := os.Open(filepath.Join(boot, "System.map-"+k.Release))
	if err != nil {
		t.Fatal(err)
	}
	defer sysmap.Close()
	syms, err := LoadSymbols(symvers, sysmap)
	if err != nil {
		t.Fatal(err)
	}
	vmlinuxPath := filepath.Join(boot, "vmlinux-"+k.Release)
	vmlinux, err := os.Open(vmlinuxPath)
	if err != nil {
		t.Fatal(err)
	}
	defer vmlinux.Close()
	st, err := vmlinux.Stat()
	if err != nil {
		t.Fatal(err)
	}

	// The units' own symbols, as vmlinux groups them: each STT_FILE
	// symbol starts a unit. Several units may share a base name.
	type unit struct {
		file  string
		names []string
	}
	var units []*unit
	unitOf := map[addrName]*unit{}
	raw, err := elf.Open(vmlinuxPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = raw.Close() }()
	all, err := raw.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	cur := &unit{}
	for _, s := range all {
		switch {
		case elf.ST_TYPE(s.Info) == elf.STT_FILE:
			cur = &unit{file: s.Name}
			units = append(units, cur)
		case elf.ST_BIND(s.Info) == elf.STB_LOCAL && (elf.ST_TYPE(s.Info) == elf.STT_FUNC || elf.ST_TYPE(s.Info) == elf.STT_OBJECT):
			cur.names = append(cur.names, s.Name)
			unitOf[addrName{s.Value, s.Name}] = cur
		}
	}
	named := func(file string) []string {
		for _, u := range units {
			if u.file == file {
				return u.names
			}
		}
		t.Fatalf("no unit %s in vmlinux", file)
		return nil
	}
	hist, synth := named("trace_events_hist.c"), named("trace_events_synth.c")
	if _, err := syms.Position("last_cmd", Definer{Names: hist, File: "trace_events_hist.c"}); !isAmbiguous(err) {
		t.Fatalf("last_cmd without vmlinux: %v, want it ambiguous", err)
	}

	if err := syms.LoadSourceFiles(vmlinux, st.Size()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		unit []string
		file string
		want uint64
	}{{synth, "trace_events_synth.c", 1}, {hist, "trace_events_hist.c", 2}} {
		if pos, err := syms.Position("last_cmd", Definer{Names: c.unit, File: c.file}); err != nil || pos != c.want {
			t.Errorf("last_cmd of %s: position %d, %v; want %d", c.file, pos, err, c.want)
		}
	}

	// Every static copy of a repeated name: placed by its file, it is
	// that copy; placed by the address order alone, count how often it
	// is another unit's.
	agree, undecided, wrong, byFile := 0, 0, 0, 0
	withFiles := syms.files
	for name, idx := range syms.at {
		for _, at := range idx {
			u := unitOf[addrName{syms.addr[at], name}]
			if u == nil || withFiles[at] == "" {
				continue
			}
			d := Definer{Names: u.names, File: u.file}
			filePos, err := syms.Position(name, d)
			if err != nil {
				continue // two units of that file name define it
			}
			byFile++
			if got := idx[filePos-1]; got != at {
				t.Errorf("%s of %s at %#x: position %d is the copy at %#x", name, u.file, syms.addr[at], filePos, syms.addr[got])
			}
			syms.files = nil
			orderPos, err := syms.Position(name, d)
			syms.files = withFiles
			switch {
			case err != nil:
				undecided++
			case orderPos == filePos:
				agree++
			default:
				wrong++
				t.Logf("%s of %s: the address order alone chooses copy %d, another unit's; it is %d", name, u.file, orderPos, filePos)
			}
		}
	}
	t.Logf("%d copies of repeated names placed by their file; the address order alone chose the same copy for %d, another unit's for %d, and none for %d",
		byFile, agree, wrong, undecided)
	if byFile < 1000 {
		t.Errorf("only %d copies placed by file", byFile)
	}
	// One the address order gets wrong: ptp_clock.o and ptp_sysfs.o lie
	// side by side, and ptp_sysfs.c's unregister_vclock does not.
	if pos, err := syms.Position("unregister_vclock", Definer{Names: named("ptp_sysfs.c"), File: "ptp_sysfs.c"}); err != nil || pos != 2 {
		t.Errorf("unregister_vclock of ptp_sysfs.c: position %d, %v; want 2", pos, err)
	}
	// A global is the global copy, whatever unit refers to it.
	if pos, err := syms.Position("calipso_doi_walk", Definer{Names: hist, File: "trace_events_hist.c", Global: true}); err != nil || pos != 2 {
		t.Errorf("global calipso_doi_walk: position %d, %v; want 2", pos, err)
	}
}

// corpusDebugInfo fetches the corpus kernel (Debian's 6.1.0-53) and
// unpacks its -dbg package, once into the lab cache.
func corpusDebugInfo(tb testing.TB) (*lab.DebianKernel, string) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("fetches the corpus kernel's -dbg package; go test without -short runs it")
	}
	ctx := context.Background()
	opts := lab.FetchOptions{ABI: "6.1.0-53", Log: testutil.LogWriter(tb)}
	k, err := lab.Fetch(ctx, opts)
	if err != nil {
		tb.Fatalf("lab: %v", err)
	}
	dbg, err := lab.FetchDebugInfo(ctx, opts, k)
	if err != nil {
		tb.Fatalf("lab: %v", err)
	}
	return k, dbg
}

func isAmbiguous(err error) bool {
	var amb *AmbiguousSymbolError
	return errors.As(err, &amb)
}

// TestCorpusKernelModuleSourceFiles does the same for every module of
// the corpus kernel: the installed module (stripped of its STT_FILE
// symbols, as Debian installs it) is read with the -dbg package's
// unstripped copy, and every static copy of a repeated name is placed
// at its own position. The test reports how often the symbol table's
// order alone would have chosen another unit's copy.
func TestCorpusKernelModuleSourceFiles(t *testing.T) {
	k, dbg := corpusDebugInfo(t)
	installed := filepath.Join(k.Root, "lib", "modules", k.Release)
	debugDir := filepath.Join(dbg, "usr", "lib", "debug", "lib", "modules", k.Release)
	modules, placed, agree, wrong, undecided := 0, 0, 0, 0, 0
	err := filepath.WalkDir(filepath.Join(installed, "kernel"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".ko" {
			return err
		}
		rel, _ := filepath.Rel(installed, p)
		ko, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dko, err := os.ReadFile(filepath.Join(debugDir, rel))
		if err != nil {
			return err
		}
		syms, err := LoadModuleSymbols(ko)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if syms.HasSourceFiles() {
			return fmt.Errorf("%s: the installed module has STT_FILE symbols", rel)
		}
		if err := syms.LoadModuleSourceFiles(dko); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		modules++
		// The units of the module, as its unstripped table groups them.
		raw, err := elf.NewFile(bytes.NewReader(dko))
		if err != nil {
			return err
		}
		all, err := raw.Symbols()
		if err != nil {
			return err
		}
		type unit struct {
			file  string
			names []string
		}
		var cur *unit
		unitAt := map[int]*unit{} // index among kept symbols
		kept, _, _ := keptModuleSymbols(raw, all)
		i := 0
		for _, s := range all {
			if elf.ST_TYPE(s.Info) == elf.STT_FILE {
				cur = &unit{file: s.Name}
				continue
			}
			if i < len(kept) && s.Name == kept[i].Name && s.Value == kept[i].Value && s.Section == kept[i].Section {
				if cur != nil && elf.ST_BIND(s.Info) == elf.STB_LOCAL {
					cur.names = append(cur.names, s.Name)
					unitAt[i] = cur
				}
				i++
			}
		}
		withFiles := syms.files
		for name, idx := range syms.at {
			for _, at := range idx {
				u := unitAt[at]
				if u == nil {
					continue
				}
				d := Definer{Names: u.names, File: u.file}
				pos, err := syms.Position(name, d)
				if err != nil {
					continue // two units of that file name define it
				}
				placed++
				if idx[pos-1] != at {
					t.Errorf("%s: %s of %s: position %d is another copy", rel, name, u.file, pos)
				}
				syms.files = nil
				orderPos, err := syms.Position(name, d)
				syms.files = withFiles
				switch {
				case err != nil:
					undecided++
				case orderPos == pos:
					agree++
				default:
					wrong++
					t.Logf("%s: %s of %s: the symbol order alone chooses copy %d, another unit's; it is %d", rel, name, u.file, orderPos, pos)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d modules; %d static copies of repeated names placed by their file; the symbol order alone chose the same copy for %d, another unit's for %d, and none for %d",
		modules, placed, agree, wrong, undecided)
	if modules < 1000 || placed < 100 {
		t.Errorf("only %d modules, %d copies placed by file", modules, placed)
	}
}

// BenchmarkCorpusKernelSymbols measures what create spends on the corpus
// kernel's symbols: System.map and Module.symvers alone (the baseline),
// and with the unstripped vmlinux's source files.
func BenchmarkCorpusKernelSymbols(b *testing.B) {
	k, dbg := corpusDebugInfo(b)
	boot := filepath.Join(dbg, "usr", "lib", "debug", "boot")
	symvers, err := os.ReadFile(filepath.Join(k.HeadersDir, "Module.symvers"))
	if err != nil {
		b.Fatal(err)
	}
	sysmap, err := os.ReadFile(filepath.Join(boot, "System.map-"+k.Release))
	if err != nil {
		b.Fatal(err)
	}
	load := func(b *testing.B) *Symbols {
		s, err := LoadSymbols(bytes.NewReader(symvers), bytes.NewReader(sysmap))
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	b.Run("system-map", func(b *testing.B) {
		for b.Loop() {
			load(b)
		}
	})
	b.Run("system-map+vmlinux", func(b *testing.B) {
		for b.Loop() {
			s := load(b)
			f, err := os.Open(filepath.Join(boot, "vmlinux-"+k.Release))
			if err != nil {
				b.Fatal(err)
			}
			st, err := f.Stat()
			if err != nil {
				b.Fatal(err)
			}
			if err := s.LoadSourceFiles(f, st.Size()); err != nil {
				b.Fatal(err)
			}
			_ = f.Close()
		}
	})
}
