package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/ksrc"
	"github.com/splicefleet/splicefleet/splice"
)

type createOptions struct {
	module  string
	source  string
	patch   string
	diffext string
	// patchText is the patch --diffext derived; patch then names it in
	// messages.
	patchText []byte
	// onTopOf are the earlier updates' patches (--on-top-of), in order.
	onTopOf []string
	// sourcePatch and earlier are what create --patch records in the
	// manifest: its patch's digest and the earlier updates'.
	sourcePatch  string
	earlier      []splice.UpdateRef
	kernelSource string
	systemMap    string
	vmlinux      string
	// positionsByOrder: klpgen.Options.PositionsByOrder.
	positionsByOrder bool
	// vmlinuxRead is the unstripped vmlinux create read (--vmlinux or a
	// default place), beside which the unstripped modules are sought.
	vmlinuxRead string
	modulesDir  string
	cacheDir    string
	kernelBuild string
	// maxHeaderUnits bounds the units a changed header may reach
	// (--max-header-units, ksrc's default unless given; at least 1).
	maxHeaderUnits int
	moduleName     string
	strip          bool
	id             string
	version        uint64
	kernel         string
	buildID        string
	cves           []string
	description    string
	functions      []string
	replace        bool
	expires        string
	out            string
	force          bool
}

func newCreateCmd(e *env) *cobra.Command {
	var o createOptions
	cmd := &cobra.Command{
		Use:   "create (--module FILE.ko | --source DIR --kernel-build DIR | --patch FIX.patch --kernel-source DIR --kernel-build DIR) --id ID --version N -o OUT.splice",
		Short: "Wrap a livepatch module into an unsigned update bundle",
		Long: `Wrap a livepatch kernel module into an update bundle. The module must be a
livepatch module (MODULE_INFO(livepatch, "Y")). The target kernel defaults to
the release in the module's vermagic, and the replaced functions to those the
module names in its klp_func tables; --function names them when the module
does not. Sign the result with "splicefleet sign".

With --source, create builds the module first: it copies DIR (C sources with
a Kbuild or Makefile for an out-of-tree module) into a temporary folder, runs
"make -C KERNEL-BUILD M=<copy> -j2 modules" there with make's output on
stderr, strips the module's debug info (--strip=false keeps it) and wraps
the one .ko it built (--module-name picks one when it builds several).
KERNEL-BUILD is the target kernel's build folder, e.g.
/lib/modules/RELEASE/build or an unpacked linux-headers package. Nothing is
written into DIR. A failed build exits 2.

With --patch, create makes the module itself from a source patch, as
ksplice-create and kpatch-build do: it prepares the kernel source tree
(--kernel-source, e.g. Debian's linux-source package unpacked) for the
target's configuration from KERNEL-BUILD once (cached in --cache-dir),
compiles the .c file the patch touches before and after it with the
kernel's own flags plus -ffunction-sections -fdata-sections, compares the
two objects function by function (as "splicefleet diff" does), and
generates a livepatch module that replaces exactly the changed functions:
their new code, with references to static and unexported kernel symbols
resolved by the kernel's livepatch relocations (positions from
--system-map). A patch the livepatch cannot carry safely (changed data,
init code, inlined functions, ...) is refused with the reasons (exit 1).

With --on-top-of EARLIER.patch (repeatable, in the order the updates were
applied), the patch is a later fix on top of earlier updates the hosts
run already: both sides are compiled with the earlier updates applied, so
a function an earlier update replaced carries both changes. The manifest
names the earlier updates by their patch digests, and a host applies the
bundle only where they are applied.`,
		Example: `  splicefleet create --module livepatch_fix.ko --id cve-2026-1234 --version 1 --cve CVE-2026-1234 -o fix.splice
  splicefleet create --source ./livepatch_fix --kernel-build /lib/modules/6.1.0-56-cloud-amd64/build --id cve-2026-1234 --version 2 -o fix.splice
  splicefleet create --patch fix.patch --kernel-source linux-source-6.1 --kernel-build /usr/src/linux-headers-6.1.0-56-cloud-amd64 --id cve-2026-1234 --version 3 --expires 720h -o fix.splice`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			return create(ctx, e, &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.module, "module", "", "livepatch kernel module (.ko)")
	f.StringVar(&o.source, "source", "", "build the module from this folder of C sources (with a Kbuild or Makefile)")
	f.StringVar(&o.patch, "patch", "", "generate the module from this source patch (unified diff, -p1) to one .c file of the kernel")
	f.StringVar(&o.diffext, "diffext", "", "generate the module from the changed files under --kernel-source: each FILE.EXT beside its FILE (Ksplice's mode; e.g. --diffext new)")
	f.StringArrayVar(&o.onTopOf, "on-top-of", nil, "with --patch: an earlier update's patch that the hosts run already (repeatable, in the order they were applied); the patch is built on top of them")
	f.StringVar(&o.kernelSource, "kernel-source", "", "with --patch: the target kernel's source tree")
	f.StringVar(&o.systemMap, "system-map", "", "with --patch: the target kernel's System.map (default: in --kernel-build, or /boot/System.map-RELEASE)")
	f.StringVar(&o.vmlinux, "vmlinux", "", "with --patch: the target kernel's unstripped vmlinux (the -dbg package's /usr/lib/debug/boot/vmlinux-RELEASE), which says the source file of each static symbol System.map lists twice (default: beside --system-map, in --kernel-build, or that path)")
	f.BoolVar(&o.positionsByOrder, "positions-by-order", false, "with --patch: when no unstripped vmlinux or module says which unit defined a static symbol whose name other units use too, accept the copy the symbols' order suggests (it can be another unit's; create warns)")
	f.StringVar(&o.modulesDir, "modules", "", "with --patch: the target's modules folder, /lib/modules/RELEASE (default: that folder on this machine), for a file built into a module")
	f.StringVar(&o.cacheDir, "cache-dir", "", "with --patch: where prepared source trees are kept (default ~/.cache/splicefleet)")
	f.IntVar(&o.maxHeaderUnits, "max-header-units", ksrc.DefaultMaxHeaderUnits, "with --patch: how many units the configuration builds a changed header may reach before the patch is refused (each is compiled before and after it)")
	f.StringVar(&o.kernelBuild, "kernel-build", "", "with --source or --patch: the target kernel's build folder (what make -C takes)")
	f.StringVar(&o.moduleName, "module-name", "", "with --source: the module to wrap when the build makes several; with --patch: the generated module's name (default lp_ID_vVERSION)")
	f.BoolVar(&o.strip, "strip", true, "with --source or --patch: strip debug info from the built module (strip --strip-debug)")
	f.StringVar(&o.id, "id", "", "patch id, stable across versions (a-z 0-9 . _ -)")
	f.Uint64Var(&o.version, "version", 0, "patch version; must grow for every new bundle of one id")
	f.StringVar(&o.kernel, "kernel", "", "target kernel release (default: from the module's vermagic)")
	f.StringVar(&o.buildID, "build-id", "", "target kernel's GNU build id (hex), to pin one exact build")
	f.StringArrayVar(&o.cves, "cve", nil, "CVE id the patch fixes (repeatable)")
	f.StringVar(&o.description, "description", "", "what the patch fixes")
	f.StringArrayVar(&o.functions, "function", nil, "function the module replaces (repeatable; default: read from the module)")
	f.BoolVar(&o.replace, "replace", false, "livepatch atomic replace: this patch replaces all earlier ones on a host")
	f.StringVar(&o.expires, "expires", "", "refuse the bundle after this time (RFC 3339) or duration from now (e.g. 720h)")
	f.StringVarP(&o.out, "output", "o", "", "bundle file to write")
	f.BoolVar(&o.force, "force", false, "overwrite the output file")
	for _, name := range []string{"id", "version", "output"} {
		_ = cmd.MarkFlagRequired(name)
	}
	cmd.MarkFlagsOneRequired("module", "source", "patch", "diffext")
	cmd.MarkFlagsMutuallyExclusive("module", "source", "patch", "diffext")

	return cmd
}

// create wraps the module given with --module, or builds one from --source
// first; both paths end in wrapModule.
func create(ctx context.Context, e *env, o *createOptions) error {
	if (o.patch != "" || o.diffext != "") && o.kernelSource == "" {
		return errors.New("--kernel-source is required with --patch and --diffext: the target kernel's source tree")
	}
	if o.diffext != "" && len(o.onTopOf) > 0 {
		return errors.New("--on-top-of only applies with --patch: the FILE.EXT copies of --diffext are compared with the pristine files, which the earlier updates change")
	}
	if o.diffext != "" {
		if o.kernelBuild == "" {
			return errors.New("--kernel-build is required with --diffext: the target kernel's build folder")
		}
		text, files, err := ksrc.DiffExt(o.kernelSource, o.diffext)
		if err != nil {
			return &refusal{err}
		}
		ext := "." + strings.TrimPrefix(o.diffext, ".")
		fmt.Fprintf(e.stderr, "splicefleet: --diffext %s: the patch is derived from %d changed file%s: %s\n", ext, len(files), plural(len(files)), strings.Join(files, ", "))
		o.patch, o.patchText = "the "+ext+" files under "+o.kernelSource, text
	}
	if o.source == "" && o.patch == "" && o.moduleName != "" {
		return errors.New("--module-name only applies with --source or --patch")
	}
	if (o.source != "" || o.patch != "") && o.kernelBuild == "" {
		return errors.New("--kernel-build is required with --source and --patch: the target kernel's build folder")
	}
	if o.patch == "" && (o.kernelSource != "" || o.systemMap != "" || o.vmlinux != "" || o.positionsByOrder || o.cacheDir != "" || o.modulesDir != "" || len(o.onTopOf) > 0) {
		return errors.New("--kernel-source, --system-map, --vmlinux, --positions-by-order, --modules, --cache-dir and --on-top-of only apply with --patch")
	}
	if o.maxHeaderUnits < 1 {
		return fmt.Errorf("--max-header-units %d: give a count of at least 1", o.maxHeaderUnits)
	}
	if len(o.onTopOf) > 0 && o.replace {
		return errors.New("--on-top-of and --replace: an atomic-replace bundle takes every earlier livepatch off, so it must carry every earlier fix itself; build it from one patch holding them all, without --on-top-of")
	}
	if !o.force {
		if _, err := os.Stat(o.out); err == nil {
			return fmt.Errorf("%s exists; refusing to overwrite (use --force)", o.out)
		}
	}
	if o.patch != "" {
		return createFromPatch(ctx, e, o)
	}
	if o.source == "" {
		module, err := readFile(o.module, splice.MaxModuleSize)
		if err != nil {
			return err
		}
		return wrapModule(e, o, o.module, module)
	}
	built, err := ksrc.BuildModule(ctx, ksrc.BuildOptions{
		Source:      o.source,
		KernelBuild: o.kernelBuild,
		ModuleName:  o.moduleName,
		Strip:       o.strip,
	}, e.stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, built.Summary())
	return wrapModule(e, o, fmt.Sprintf("%s (built from %s)", built.File, o.source), built.Module)
}

// wrapModule checks a module and writes the bundle for it; label names the
// module in messages.
func wrapModule(e *env, o *createOptions, label string, module []byte) error {
	info, err := kmod.ReadModInfo(module)
	if err != nil {
		return &refusal{fmt.Errorf("%s: %w", label, err)}
	}
	if err := info.RequireLivepatch(); err != nil {
		return &refusal{fmt.Errorf("%s: %w", label, err)}
	}
	now := e.now()
	m := splice.Manifest{
		ID:          o.id,
		Version:     o.version,
		Description: o.description,
		CVEs:        upper(o.cves),
		Target:      splice.Target{Release: info.Release, BuildID: strings.ToLower(o.buildID), Arch: info.Arch},
		Module:      splice.ModuleRef{Name: info.Name},
		Replace:     o.replace,
		Functions:   info.Functions,
		SourcePatch: o.sourcePatch,
		OnTopOf:     o.earlier,
		Created:     now,
	}
	if o.kernel != "" {
		if info.Release != "" && o.kernel != info.Release {
			return &refusal{fmt.Errorf("--kernel %s, but the module was built for %s (vermagic %q)", o.kernel, info.Release, info.Vermagic)}
		}
		m.Target.Release = o.kernel
	}
	if m.Target.Release == "" {
		return errors.New("the module's vermagic names no kernel release; give --kernel")
	}
	if len(o.functions) > 0 {
		given := slices.Sorted(slices.Values(o.functions))
		if len(info.Functions) > 0 && !slices.Equal(given, info.Functions) {
			return &refusal{fmt.Errorf("--function says %s, but the module replaces %s",
				strings.Join(given, ", "), strings.Join(info.Functions, ", "))}
		}
		m.Functions = given
	}
	if len(m.Functions) == 0 {
		return fmt.Errorf("%s does not name the functions it replaces; give them with --function", label)
	}
	if o.expires != "" {
		t, err := parseExpiry(o.expires, now)
		if err != nil {
			return err
		}
		m.Expires = &t
	}
	b, err := splice.New(m, module)
	if err != nil {
		return err
	}
	if err := writeBundle(o.out, b); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "created %s: %s version %d for %s/%s, module %s (%d bytes, sha256 %s), replaces %s; unsigned: sign it with \"splicefleet sign\"\n",
		o.out, m.ID, m.Version, m.Target.Release, m.Target.Arch, info.Name, len(module), splice.Digest(module)[:16], strings.Join(m.Functions, ", "))
	return nil
}

func parseExpiry(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("--expires %s must be in the future", s)
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--expires %q: want an RFC 3339 time or a duration such as 720h", s)
	}
	if !t.After(now) {
		return time.Time{}, fmt.Errorf("--expires %s is in the past", s)
	}
	return t, nil
}

func upper(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = strings.ToUpper(strings.TrimSpace(s))
	}
	return out
}
