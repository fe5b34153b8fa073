package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// vfatPatch changes vfat_fill_super of fs/fat/namei_vfat.c, which the
// cloud kernel builds into the module vfat: it logs a line on every
// mount of a vfat file system (gcc moves the call into a cold part,
// vfat_fill_super.cold, which goes with it). Its code calls
// fat_fill_super, which the module fat exports (vfat depends on fat),
// so the bundle reaches it through a livepatch relocation against fat
// in vfat's relocation section.
const vfatPatch = `--- a/fs/fat/namei_vfat.c
+++ b/fs/fat/namei_vfat.c
@@ -1202,7 +1202,11 @@ static void setup(struct super_block *sb
 
 static int vfat_fill_super(struct super_block *sb, void *data, int silent)
 {
-	return fat_fill_super(sb, data, silent, 1, setup);
+	int err = fat_fill_super(sb, data, silent, 1, setup);
+
+	if (!err)
+		pr_info("splicefleet: vfat mount patched\n");
+	return err;
 }
 
 static struct dentry *vfat_mount(struct file_system_type *fs_type,
`

// TestScenarioCreatePatchModuleExport: a patch to a function of the
// module vfat whose code calls an export of the module fat goes through
// create --patch to a bundle; in a guest it is applied before vfat is
// loaded (vfat patched when it loads), undone, and applied again with
// vfat loaded (patched at once). While it is applied, mounting a vfat
// file system logs the patch's line; undone, it does not.
func TestScenarioCreatePatchModuleExport(t *testing.T) {
	note := scenario(t)
	c := newPatchCreator(t)
	patch := c.writePatch("vfat.patch", vfatPatch)
	out := c.path("vfat.splice")
	log, took, err := c.create("--patch", patch, "--id", "vfat", "--version", "1",
		"--description", "lab: create --patch of fs/fat/namei_vfat.c", "-o", out)
	t.Logf("create --patch of a module calling another module's export took %s:\n%s", took.Round(time.Millisecond), log)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"built into module vfat",
		"vfat_fill_super changed",
		"reaches fat_fill_super of fat (exported by fat, a dependency of vfat) through a livepatch relocation",
	} {
		if !strings.Contains(log, w) {
			t.Errorf("create --patch output lacks %q", w)
		}
	}
	bundle := c.sign(out)
	var extra []File
	extra = append(extra, File{Path: "lab/extra/vfat.splice", Data: bundle, Mode: 0o644})
	for _, m := range []string{"fat", "vfat"} {
		ko, err := os.ReadFile(filepath.Join(c.modules, "kernel", "fs", "fat", m+".ko"))
		if err != nil {
			t.Fatal(err)
		}
		extra = append(extra, File{Path: "lab/extra/" + m + ".ko", Data: ko, Mode: 0o644})
	}
	disk := c.path("fat.img")
	if err := os.WriteFile(disk, make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	r := bootScenario(t, note, Guest{Disk: disk, Initramfs: Initramfs{Modules: append(append([]string{}, DiskModules...), vfatNLS...)}}, `
mkdosfs /dev/vda >/dev/null 2>&1
mark vf-mkfs "$?"
mkdir -p /v
logged() { dmesg | grep -c 'splicefleet: vfat mount patched'; }
try vf-apply sf apply /lab/extra/vfat.splice
mark vf-waiting "$(cat /sys/kernel/livepatch/lp_vfat_v1/enabled) $(cat /sys/kernel/livepatch/lp_vfat_v1/vfat/patched)"
try vf-fat insmod /lab/extra/fat.ko
try vf-load insmod /lab/extra/vfat.ko
mark vf-patched "$(cat /sys/kernel/livepatch/lp_vfat_v1/vfat/patched) $(cat /sys/kernel/livepatch/lp_vfat_v1/transition)"
try vf-mount mount -t vfat /dev/vda /v
mark vf-after "$(logged)"
umount /v
try vf-undo sfv undo vfat
try vf-mount-undone mount -t vfat /dev/vda /v
mark vf-undone "$(logged)"
umount /v
try vf-apply2 sf apply /lab/extra/vfat.splice
mark vf-enabled2 "$(cat /sys/kernel/livepatch/lp_vfat_v1/enabled) $(cat /sys/kernel/livepatch/lp_vfat_v1/vfat/patched) $(cat /sys/kernel/livepatch/lp_vfat_v1/transition)"
try vf-mount2 mount -t vfat /dev/vda /v
mark vf-loaded "$(logged)"
umount /v
try vf-undo2 sfv undo vfat
try vf-mount3 mount -t vfat /dev/vda /v
mark vf-undone2 "$(logged)"
umount /v
mark vf-livepatches "$(ls /sys/kernel/livepatch)"
mark vf-oops "$(dmesg | grep -c 'BUG:\|Oops\|WARNING:\|not found in symbol table\|unresolvable ambiguity')"
`, extra...)
	want(t, r, "vf-mkfs", "0")
	// Patched when vfat is loaded after the patch...
	want(t, r, "vf-apply-exit", "0")
	want(t, r, "vf-waiting", "1 0") // enabled, vfat not patched: not loaded
	want(t, r, "vf-fat-exit", "0")
	want(t, r, "vf-load-exit", "0")
	want(t, r, "vf-patched", "1 0") // vfat patched, transition finished
	want(t, r, "vf-mount-exit", "0")
	want(t, r, "vf-after", "1")
	want(t, r, "vf-undo-exit", "0")
	want(t, r, "vf-mount-undone-exit", "0")
	want(t, r, "vf-undone", "1")
	// ... and at once when it is loaded already.
	want(t, r, "vf-apply2-exit", "0")
	want(t, r, "vf-enabled2", "1 1 0")
	want(t, r, "vf-mount2-exit", "0")
	want(t, r, "vf-loaded", "2")
	want(t, r, "vf-undo2-exit", "0")
	want(t, r, "vf-mount3-exit", "0")
	want(t, r, "vf-undone2", "2")
	want(t, r, "vf-livepatches", "")
	// Case-sensitive: QEMU may make the kernel log "MP-BIOS bug: 8254 timer ...".
	want(t, r, "vf-oops", "0")
	*note += fmt.Sprintf("; create --patch of vfat %.1fs; bundle %d bytes", took.Seconds(), len(bundle))
}

// vfatNLS are the character sets a vfat mount loads by default on the
// cloud kernel (codepage 437, iocharset ascii: CONFIG_FAT_DEFAULT_*),
// which it builds as modules.
var vfatNLS = []string{"nls_cp437", "nls_ascii"}
