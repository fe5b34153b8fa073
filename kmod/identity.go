package kmod

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
)

// Identity says which kernel the tree describes: its release and
// architecture (proc/sys/kernel/osrelease and arch), the GNU build id of
// its vmlinux (sys/kernel/notes; "" when the kernel has none) and whether
// it supports livepatching (sys/kernel/livepatch exists), and the boot id
// (proc/sys/kernel/random/boot_id), which tells one boot from the next.
//
// Kernels before 6.1 have no proc/sys/kernel/arch; for the running kernel
// (root "/") the architecture then comes from the Go runtime, elsewhere
// the missing file is an error.
func (k FS) Identity() (Identity, error) {
	var id Identity
	var err error
	if id.Release, err = readFile(k.path("proc", "sys", "kernel", "osrelease"), maxValueFile); err != nil {
		return Identity{}, err
	}
	if id.Arch, err = k.arch(); err != nil {
		return Identity{}, err
	}
	if id.BuildID, err = k.buildID(); err != nil {
		return Identity{}, err
	}
	bootID, err := readFile(k.path("proc", "sys", "kernel", "random", "boot_id"), maxValueFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Identity{}, err
	}
	id.BootID = bootID
	id.Livepatch = exists(k.livepatchDir())
	return id, nil
}

// arch reads proc/sys/kernel/arch, falling back to the Go runtime's
// architecture for the running kernel.
func (k FS) arch() (string, error) {
	a, err := readFile(k.path("proc", "sys", "kernel", "arch"), maxValueFile)
	if errors.Is(err, fs.ErrNotExist) && k.Root() == "/" {
		if u, ok := unameArch[runtime.GOARCH]; ok {
			return u, nil
		}
		return runtime.GOARCH, nil
	}
	return a, err
}

// unameArch maps GOARCH to the kernel's machine names (uname -m).
var unameArch = map[string]string{
	"amd64": "x86_64", "386": "i686", "arm64": "aarch64", "arm": "armv7l",
	"ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x", "riscv64": "riscv64",
	"loong64": "loongarch64", "mips64le": "mips64", "mipsle": "mips",
}

// buildID reads the GNU build id from sys/kernel/notes; a kernel without
// the file has no known build id.
func (k FS) buildID() (string, error) {
	path := k.path("sys", "kernel", "notes")
	b, err := readRaw(path, maxNotesFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	id, err := parseBuildID(b, binary.NativeEndian)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

// ntGNUBuildID is the ELF note type of a GNU build id.
const ntGNUBuildID = 3

// parseBuildID walks an ELF note stream (as in a PT_NOTE segment, and as
// the kernel exports its own notes): records of a 4-byte name size,
// descriptor size and type in the kernel's byte order, then the name and
// the descriptor, each padded to 4 bytes. It returns the descriptor of the
// first "GNU" note of type NT_GNU_BUILD_ID in hex, or "" when there is
// none.
func parseBuildID(b []byte, order binary.ByteOrder) (string, error) {
	for off := 0; off < len(b); {
		if len(b)-off < 12 {
			return "", fmt.Errorf("note at offset %d: truncated header", off)
		}
		namesz := int(order.Uint32(b[off:]))
		descsz := int(order.Uint32(b[off+4:]))
		typ := order.Uint32(b[off+8:])
		off += 12
		name, ok := noteField(b, off, namesz)
		if !ok {
			return "", fmt.Errorf("note at offset %d: name of %d bytes runs past the end", off-12, namesz)
		}
		off += align4(namesz)
		desc, ok := noteField(b, off, descsz)
		if !ok {
			return "", fmt.Errorf("note at offset %d: descriptor of %d bytes runs past the end", off-12-align4(namesz), descsz)
		}
		off += align4(descsz)
		if typ == ntGNUBuildID && string(name) == "GNU\x00" && descsz > 0 {
			return hex.EncodeToString(desc), nil
		}
	}
	return "", nil
}

// noteField returns b[off:off+n] when the field and its padding fit.
func noteField(b []byte, off, n int) ([]byte, bool) {
	if n < 0 || n > len(b) || off+align4(n) > len(b) {
		return nil, false
	}
	return b[off : off+n], true
}

// align4 rounds n up to a multiple of 4.
func align4(n int) int { return (n + 3) &^ 3 }
