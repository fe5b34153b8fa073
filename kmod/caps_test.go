package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCapEff(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Capabilities
		err  string
	}{
		{"Name:\tsplicefleet\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n", 0x1ffffffffff, ""},
		{"CapEff:\t0000000000010000\n", 1 << CapSysModule, ""},
		{"CapEff:\t0000000000000000\n", 0, ""},
		{"Name:\tx\nCapPrm:\t0000000000010000\n", 0, "no CapEff line"},
		{"CapEff:\tzz\n", 0, `CapEff "zz": not a hexadecimal`},
	} {
		got, err := parseCapEff(strings.NewReader(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %x %v, want %x", tt.in, got, err, tt.want)
		}
	}
}

// A process without CAP_SYS_MODULE (an agent run as a plain user, or
// under a bounding set that left it out) is told so before it tries a
// load; one that holds it, alone or among others, passes.
func TestCheckCapSysModule(t *testing.T) {
	root := t.TempDir()
	write := func(capEff string) {
		p := filepath.Join(root, "proc", "self", "status")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("Name:\tsplicefleet\nCapEff:\t"+capEff+"\nCapBnd:\t000001ffffffffff\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	write("0000000000000000")
	if err := fs.CheckCapSysModule(); !errors.Is(err, ErrNoCapSysModule) {
		t.Errorf("no capabilities: %v, want ErrNoCapSysModule", err)
	}
	write("00000000000000ff") // CAP_CHOWN..CAP_SETPCAP, not 16
	if err := fs.CheckCapSysModule(); !errors.Is(err, ErrNoCapSysModule) {
		t.Errorf("capabilities without CAP_SYS_MODULE: %v", err)
	}
	write("0000000000010000")
	if err := fs.CheckCapSysModule(); err != nil {
		t.Errorf("CAP_SYS_MODULE alone: %v", err)
	}
	write("000001ffffffffff")
	if err := fs.CheckCapSysModule(); err != nil {
		t.Errorf("root's full set: %v", err)
	}
}
