package ksrc

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// hvcKconfig is an excerpt of drivers/tty/hvc/Kconfig of linux-source-6.1
// 6.1.187-1, and hvcDCCFix the change 6.1.190-1 makes to it ("tty: hvc:
// restrict HVC_DCC to ARMv6+ and ARM64").
const hvcKconfig = `# SPDX-License-Identifier: GPL-2.0

config HVC_DRIVER
	bool
	help
	  Generic "hypervisor virtual console" infrastructure for various
	  hypervisors (pSeries, iSeries, Xen).
	  It will automatically be selected if one of the back-end console drivers
	  is selected.

config HVC_XEN
	bool "Xen Hypervisor Console support"
	depends on XEN
	select XEN_XENBUS_FRONTEND
	default y
	help
	  Xen virtual console device driver

config HVC_DCC
	bool "ARM JTAG DCC console"
	depends on ARM || ARM64
	select HVC_DRIVER
	select SERIAL_CORE_CONSOLE
	help
	  This console uses the JTAG DCC on ARM to create a console under the HVC
	  driver.

if HVC_DRIVER
endif
`

const hvcDCCFix = `--- a/drivers/tty/hvc/Kconfig
+++ b/drivers/tty/hvc/Kconfig
@@ -18,7 +18,7 @@
 
 config HVC_DCC
 	bool "ARM JTAG DCC console"
-	depends on ARM || ARM64
+	depends on (ARM && (CPU_V6 || CPU_V6K || CPU_V7)) || ARM64
 	select HVC_DRIVER
 	select SERIAL_CORE_CONSOLE
 	help
`

// The cloud configuration of the corpus kernel, as far as these tests
// read it.
const hvcConfig = "CONFIG_XEN=y\nCONFIG_HVC_DRIVER=y\nCONFIG_HVC_XEN=y\n# CONFIG_HVC_DCC is not set\n"

func kconfigTree(t *testing.T) *Tree {
	t.Helper()
	src := testutil.TempTree(t, map[string]string{"drivers/tty/hvc/Kconfig": hvcKconfig})
	obj := t.TempDir()
	if err := os.WriteFile(filepath.Join(obj, ".config"), []byte(hvcConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return &Tree{Source: src, ObjDir: obj, maxHeaderUnits: DefaultMaxHeaderUnits}
}

// Debian's change to an option this kernel leaves unset concerns other
// kernels: it is left out, with a note naming the option.
func TestKconfigUnsetOptionLeftOut(t *testing.T) {
	notes, err := kconfigTree(t).kconfigNotes(mustParse(t, hvcDCCFix))
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || !strings.HasPrefix(notes[0], "drivers/tty/hvc/Kconfig: the change is to CONFIG_HVC_DCC, which this kernel's configuration leaves unset") {
		t.Errorf("notes %q, want one naming CONFIG_HVC_DCC", notes)
	}
}

// A change that concerns this kernel's configuration is refused, and
// says which option or line.
func TestKconfigRefusals(t *testing.T) {
	tree := kconfigTree(t)
	for _, tt := range []struct{ name, hunk, text string }{
		{"an option this kernel sets", "@@ -11,5 +11,5 @@\n config HVC_XEN\n \tbool \"Xen Hypervisor Console support\"\n-\tdepends on XEN\n+\tdepends on XEN && !BROKEN\n \tselect XEN_XENBUS_FRONTEND\n \tdefault y\n",
			"CONFIG_HVC_XEN, which this kernel's configuration sets"},
		{"a new default", "@@ -18,4 +18,5 @@\n \n config HVC_DCC\n \tbool \"ARM JTAG DCC console\"\n+\tdefault y\n \tdepends on ARM || ARM64\n",
			"gives CONFIG_HVC_DCC, which this kernel leaves unset, a default"},
		{"outside any entry", "@@ -28,2 +28,3 @@\n if HVC_DRIVER\n+source \"drivers/tty/hvc/Kconfig.more\"\n endif\n",
			"outside any option's entry"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			patch := mustParse(t, "--- a/drivers/tty/hvc/Kconfig\n+++ b/drivers/tty/hvc/Kconfig\n"+tt.hunk)
			units, err := tree.Compile(t.Context(), patch, nil)
			if err == nil {
				_ = units.Cleanup()
				t.Fatal("Compile succeeded")
			}
			if !errors.Is(err, ErrKconfig) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("Compile = %v, want ErrKconfig saying %q", err, tt.text)
			}
		})
	}
}

func TestKconfigOptions(t *testing.T) {
	set := kconfigOptions([]byte(hvcConfig + "CONFIG_NR_CPUS=64\nCONFIG_EXT4_FS=m\n"))
	var got []string
	for name := range set {
		got = append(got, name)
	}
	slices.Sort(got)
	if want := []string{"EXT4_FS", "HVC_DRIVER", "HVC_XEN", "NR_CPUS", "XEN"}; !slices.Equal(got, want) {
		t.Errorf("set options %q, want %q", got, want)
	}
}
