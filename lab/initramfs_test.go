package lab

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

// cpioEntry is one entry read back from a newc archive.
type cpioEntry struct {
	mode         uint32
	mtime        uint32
	rmaj, rmin   uint32
	data         []byte
	uid, gid     uint32
	nameOnlyPath string
}

// readNewc reads a gzip-compressed newc archive (test helper).
func readNewc(t *testing.T, gz []byte) ([]string, map[string]cpioEntry) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	entries := map[string]cpioEntry{}
	off := 0
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+110 > len(raw) {
			t.Fatalf("archive truncated at %d", off)
		}
		h := raw[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("bad header field %d at %d: %v", i, off, err)
			}
			return uint32(v)
		}
		mode, uid, gid, mtime, size := field(1), field(2), field(3), field(5), int(field(6))
		rmaj, rmin, namesize := field(9), field(10), int(field(11))
		name := string(raw[off+110 : off+110+namesize-1])
		off = align(off + 110 + namesize)
		data := raw[off : off+size]
		off = align(off + size)
		if name == "TRAILER!!!" {
			break
		}
		order = append(order, name)
		entries[name] = cpioEntry{mode: mode, mtime: mtime, rmaj: rmaj, rmin: rmin, data: data, uid: uid, gid: gid, nameOnlyPath: name}
	}
	return order, entries
}

func TestInitramfsContents(t *testing.T) {
	spec := Initramfs{
		Script: "mark hello world\n",
		Files: []File{
			{Path: "/lab/keys/a.asc", Data: []byte("key")},
			{Path: "etc/x.sh", Data: []byte("#!/bin/sh\n"), Mode: 0o755},
		},
		Addr: "10.0.0.1/24",
	}
	var buf bytes.Buffer
	if err := WriteInitramfs(&buf, nil, spec); err != nil {
		t.Fatal(err)
	}
	order, e := readNewc(t, buf.Bytes())

	con, ok := e["dev/console"]
	if !ok || con.mode != modeChar|0o600 || con.rmaj != 5 || con.rmin != 1 {
		t.Errorf("dev/console = %+v, want char 5 1", con)
	}
	init, ok := e["init"]
	if !ok || init.mode != modeFile|0o755 {
		t.Fatalf("init = %+v, want an executable file", init)
	}
	for _, want := range []string{
		"#!/bin/busybox sh",
		"mount -t proc proc /proc",
		"mount -t sysfs sysfs /sys",
		"mount -t devtmpfs devtmpfs /dev",
		"mount -t securityfs securityfs /sys/kernel/security",
		"mount -t tmpfs tmpfs /tmp",
		"--install -s",
		"ip addr add 10.0.0.1/24 dev eth0",
		`echo "@@LAB-EXIT $code"`,
		"poweroff -f",
	} {
		if !strings.Contains(string(init.data), want) {
			t.Errorf("/init lacks %q:\n%s", want, init.data)
		}
	}
	if b := e["bin/busybox"]; b.mode != modeFile|0o755 || len(b.data) < 100000 {
		t.Errorf("bin/busybox: mode %o, %d bytes", b.mode, len(b.data))
	}
	if got := string(e["lab/run.sh"].data); got != spec.Script {
		t.Errorf("run.sh = %q", got)
	}
	if got := e["lab/keys/a.asc"]; string(got.data) != "key" || got.mode != modeFile|0o644 {
		t.Errorf("lab/keys/a.asc = %+v", got)
	}
	if got := e["etc/x.sh"]; got.mode != modeFile|0o755 {
		t.Errorf("etc/x.sh mode %o", got.mode)
	}
	// Parents come before children, every entry is root's, mtime 0.
	seen := map[string]bool{}
	for _, name := range order {
		if i := strings.LastIndex(name, "/"); i > 0 && !seen[name[:i]] {
			t.Errorf("%s comes before its folder %s", name, name[:i])
		}
		seen[name] = true
		if en := e[name]; en.mtime != 0 || en.uid != 0 || en.gid != 0 {
			t.Errorf("%s: mtime %d uid %d gid %d", name, en.mtime, en.uid, en.gid)
		}
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "var", "lab", "lab/keys"} {
		if e[d].mode != modeDir|0o755 {
			t.Errorf("%s: mode %o, want a folder", d, e[d].mode)
		}
	}

	// Reproducible: the same inputs give the same bytes.
	var again bytes.Buffer
	if err := WriteInitramfs(&again, nil, spec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two archives of the same inputs differ")
	}
}

func TestInitramfsRefusesDuplicatesAndMissingModules(t *testing.T) {
	err := WriteInitramfs(io.Discard, nil, Initramfs{Files: []File{{Path: "/init"}}})
	if err == nil || !strings.Contains(err.Error(), "/init added twice") {
		t.Errorf("duplicate /init: err = %v", err)
	}
	k := fetchKernel(t)
	err = WriteInitramfs(io.Discard, k, Initramfs{Modules: []string{"no_such_module"}})
	if err == nil || !strings.Contains(err.Error(), "module no_such_module: not in") {
		t.Errorf("missing module: err = %v", err)
	}
}

func TestInitramfsModules(t *testing.T) {
	k := fetchKernel(t)
	mods, err := k.moduleFiles(append(NetModules, "virtio-blk"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mods {
		kind := "module"
		if m.path == "" {
			kind = "built-in"
		}
		names = append(names, fmt.Sprintf("%s(%s)", m.name, kind))
	}
	t.Logf("modules: %s", strings.Join(names, " "))
	if mods[len(mods)-1].name != "virtio_blk" || len(mods) != len(NetModules)+1 {
		t.Errorf("modules = %v", names)
	}
	var buf bytes.Buffer
	if err := WriteInitramfs(&buf, k, Initramfs{Modules: NetModules}); err != nil {
		t.Fatal(err)
	}
	_, e := readNewc(t, buf.Bytes())
	init := string(e["init"].data)
	last := -1
	for _, m := range mods[:len(NetModules)] {
		if m.path == "" {
			continue
		}
		guest := "lib/modules/lab/" + m.name + ".ko"
		if !bytes.HasPrefix(e[guest].data, []byte("\x7fELF")) {
			t.Errorf("%s is not an ELF file", guest)
		}
		i := strings.Index(init, "insmod /"+guest)
		if i < last {
			t.Errorf("%s loads out of order", m.name)
		}
		last = i
	}
}
