package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/splicefleet/splicefleet/internal/safetext"
	"github.com/splicefleet/splicefleet/splice"
)

// viewPatch shows every version of one patch (key is ID or ID@VERSION)
// in full, newest first; a patch this host does not know is refused.
func viewPatch(e *env, v *splice.HostView, key string, asJSON bool) error {
	id, ver, hasVersion := strings.Cut(key, "@")
	var version uint64
	if hasVersion {
		n, err := strconv.ParseUint(ver, 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("%q: want ID or ID@VERSION, VERSION a positive number", key)
		}
		version = n
	}
	var found []splice.PatchView
	for _, p := range v.Patches {
		if p.ID == id && (!hasVersion || p.Version == version) {
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		return &refusal{fmt.Errorf("no patch %s on this host (splicefleet view lists them)", safetext.String(key))}
	}
	slices.SortFunc(found, func(a, b splice.PatchView) int { return int(b.Version) - int(a.Version) })
	if asJSON {
		return printJSON(e.stdout, found)
	}
	q := safetext.String
	for i, p := range found {
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		row := func(k, v string) {
			if v != "" {
				fmt.Fprintf(w, "%s\t%s\n", k, v)
			}
		}
		row("patch:", fmt.Sprintf("%s version %d", q(p.ID), p.Version))
		row("state:", string(p.State))
		row("reason:", q(p.Reason))
		if p.Live() {
			row("stack:", fmt.Sprintf("%d (1 is the oldest)", p.Stack))
		}
		row("replaced by:", q(p.ReplacedBy))
		row("kernel:", kernelState(p)+orEmpty(kernelDetail(p.Kernel), ", "))
		row("module:", q(p.Module))
		row("module sha256:", q(p.ModuleDigest))
		row("manifest:", q(p.ManifestDigest))
		row("atomic replace:", map[bool]string{true: "yes", false: "no"}[p.Replace])
		row("functions:", q(strings.Join(p.Functions, ", ")))
		row("cves:", q(strings.Join(p.CVEs, ", ")))
		row("description:", q(p.Description))
		row("signers:", q(strings.Join(p.Signers, ", ")))
		row("built for:", q(strings.TrimSpace(p.Patch.Kernel.Release+" "+p.Patch.Kernel.Arch+orEmpty(p.Patch.Kernel.BuildID, " build "))))
		if !p.AppliedAt.IsZero() {
			row("applied:", p.AppliedAt.UTC().Format(time.RFC3339))
		}
		row("updated:", p.Updated.UTC().Format(time.RFC3339))
		_ = w.Flush()
	}
	return nil
}

// orEmpty is prefix and s, or nothing when s is empty.
func orEmpty(s, prefix string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}
