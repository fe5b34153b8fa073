package kmod

import (
	"bytes"
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite generated fixture files under testdata")

// note encodes one ELF note record in byte order o.
func note(o binary.AppendByteOrder, name string, typ uint32, desc []byte) []byte {
	var b []byte
	nb := []byte(name + "\x00")
	b = o.AppendUint32(b, uint32(len(nb)))
	b = o.AppendUint32(b, uint32(len(desc)))
	b = o.AppendUint32(b, typ)
	b = append(b, nb...)
	b = append(b, make([]byte, align4(len(nb))-len(nb))...)
	b = append(b, desc...)
	return append(b, make([]byte, align4(len(desc))-len(desc))...)
}

// fixtureBuildID is the build id in the fixture tree's sys/kernel/notes.
const fixtureBuildID = "5e1f0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b"

// kernelNotes is a note stream shaped like a 6.1 x86_64 kernel's: Xen
// notes, a Linux note and the GNU build id.
func kernelNotes(o binary.AppendByteOrder, buildID []byte) []byte {
	var b []byte
	b = append(b, note(o, "Xen", 6, []byte("linux\x00\x00\x00"))...)
	b = append(b, note(o, "Xen", 5, []byte("2.6\x00"))...)
	b = append(b, note(o, "Linux", 0x100, []byte{0x38, 0x01, 0x06, 0x00})...)
	b = append(b, note(o, "GNU", 3, buildID)...)
	return b
}

func TestParseBuildID(t *testing.T) {
	le, be := binary.LittleEndian, binary.BigEndian
	id := []byte{0xde, 0xad, 0xbe, 0xef, 0x01}
	stream := kernelNotes(le, id)
	tests := []struct {
		name    string
		data    []byte
		order   binary.ByteOrder
		want    string
		wantErr string
	}{
		{name: "empty", data: nil, order: le, want: ""},
		{name: "kernel notes", data: stream, order: le, want: "deadbeef01"},
		{name: "big endian", data: kernelNotes(be, id), order: be, want: "deadbeef01"},
		{name: "no GNU note", data: note(le, "Xen", 3, id), order: le, want: ""},
		{name: "GNU note of another type", data: note(le, "GNU", 1, id), order: le, want: ""},
		{name: "first build id wins", data: append(note(le, "GNU", 3, []byte{1}), note(le, "GNU", 3, []byte{2})...), order: le, want: "01"},
		{name: "truncated header", data: stream[:len(stream)-len(note(le, "GNU", 3, id))+8], order: le, wantErr: "truncated header"},
		{name: "truncated descriptor", data: stream[:len(stream)-4], order: le, wantErr: "descriptor of 5 bytes runs past the end"},
		{name: "huge name size", data: append(le.AppendUint32(le.AppendUint32(le.AppendUint32(nil, 0xfffffff0), 0), 3), 'G'), order: le, wantErr: "runs past the end"},
		{name: "wrong byte order", data: stream, order: be, wantErr: "runs past the end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseBuildID(tt.data, tt.order)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseBuildID: err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseBuildID: %v", err)
			}
			if got != tt.want {
				t.Errorf("parseBuildID = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestFixtureNotes checks (and with -update writes) the fixture tree's
// binary sys/kernel/notes.
func TestFixtureNotes(t *testing.T) {
	id := []byte{0x5e, 0x1f, 0x0a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f, 0x70, 0x81, 0x92, 0xa3, 0xb4, 0xc5, 0xd6, 0xe7, 0xf8, 0x09, 0x1a, 0x2b}
	want := kernelNotes(binary.LittleEndian, id)
	path := filepath.Join(fixtureRoot, "sys", "kernel", "notes")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale; run go test ./kmod -run TestFixtureNotes -update", path)
	}
	if s, err := parseBuildID(got, binary.LittleEndian); err != nil || s != fixtureBuildID {
		t.Fatalf("parseBuildID(fixture) = %q, %v; want %q", s, err, fixtureBuildID)
	}
}
