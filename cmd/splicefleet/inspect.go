package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/internal/safetext"
	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// inspection is what `inspect --json` prints. Nothing in it is verified;
// `verify` judges a bundle.
type inspection struct {
	Bundle         string                  `json:"bundle"`
	Format         string                  `json:"format"`
	ManifestDigest string                  `json:"manifest_digest"`
	Manifest       *splice.Manifest        `json:"manifest,omitempty"`
	ManifestError  string                  `json:"manifest_error,omitempty"`
	ModuleSize     int                     `json:"module_size"`
	ModuleDigest   string                  `json:"module_sha256"`
	ModuleMatches  bool                    `json:"module_matches_manifest"`
	ModuleInfo     *kmod.ModInfo           `json:"module_info,omitempty"`
	ModuleError    string                  `json:"module_error,omitempty"`
	Signatures     []signing.SignatureInfo `json:"signatures"`
}

func newInspectCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect [--json] BUNDLE",
		Short: "Show a bundle's manifest, module info and signatures",
		Long: `Show what a bundle contains without trusting it: the manifest, the module's
own info (read only when the module matches the digest the manifest pins)
and who signed it. Use "splicefleet verify" to judge a bundle.`,
		Example: `  splicefleet inspect fix.splice
  splicefleet inspect --json fix.splice`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := readBundle(args[0])
			if err != nil {
				return err
			}
			in := inspection{
				Bundle:         args[0],
				Format:         fmt.Sprintf("%d.%d", b.Major, b.Minor),
				ManifestDigest: splice.Digest(b.Manifest),
				ModuleSize:     len(b.Module),
				ModuleDigest:   splice.Digest(b.Module),
				Signatures:     []signing.SignatureInfo{},
			}
			if m, err := splice.ParseManifest(b.Manifest); err != nil {
				in.ManifestError = err.Error()
			} else {
				in.Manifest = m
				if err := b.CheckModule(); err != nil {
					in.ModuleError = err.Error()
				} else {
					in.ModuleMatches = true
					if info, err := kmod.ReadModInfo(b.Module); err != nil {
						in.ModuleError = err.Error()
					} else {
						in.ModuleInfo = info
					}
				}
			}
			for i, raw := range b.Signatures {
				info, err := signing.Describe(raw)
				if err != nil {
					info = signing.SignatureInfo{Issuer: fmt.Sprintf("unreadable signature %d: %v", i+1, err)}
				}
				in.Signatures = append(in.Signatures, info)
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(in)
			}
			return printInspection(e, &in)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printInspection(e *env, in *inspection) error {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	// Everything a bundle says comes from a file anyone can hand the
	// operator: every string is escaped before it reaches the terminal.
	row := func(k, format string, args ...any) {
		for i, a := range args {
			if s, ok := a.(string); ok {
				args[i] = safetext.String(s)
			}
		}
		fmt.Fprintf(w, "%s\t"+format+"\n", append([]any{k}, args...)...)
	}
	row("bundle", "%s (format %s, not verified: use splicefleet verify)", in.Bundle, in.Format)
	row("manifest", "sha256 %s", in.ManifestDigest)
	if m := in.Manifest; m != nil {
		row("id", "%s", m.ID)
		row("version", "%d", m.Version)
		if m.Description != "" {
			row("description", "%s", m.Description)
		}
		if len(m.CVEs) > 0 {
			row("cves", "%s", strings.Join(m.CVEs, ", "))
		}
		target := m.Target.Release + " " + m.Target.Arch
		if m.Target.BuildID != "" {
			target += " build-id " + m.Target.BuildID
		}
		row("target", "%s", target)
		row("replace", "%v", m.Replace)
		row("functions", "%s", strings.Join(m.Functions, ", "))
		if m.SourcePatch != "" {
			row("source patch", "sha256 %s", m.SourcePatch)
		}
		for _, u := range m.OnTopOf {
			row("on top of", "%s (source patch %s)", orDash(u.Name), u.SourcePatch)
		}
		row("created", "%s", m.Created.Format(time.RFC3339))
		if m.Expires != nil {
			row("expires", "%s", m.Expires.Format(time.RFC3339))
		}
	} else {
		row("manifest error", "%s", in.ManifestError)
	}
	match := "matches the manifest"
	if !in.ModuleMatches {
		match = "DOES NOT match the manifest; not parsed"
	}
	row("module", "%d bytes, sha256 %s, %s", in.ModuleSize, in.ModuleDigest, match)
	if mi := in.ModuleInfo; mi != nil {
		row("  name", "%s", mi.Name)
		row("  vermagic", "%s", mi.Vermagic)
		row("  livepatch", "%v", mi.Livepatch)
		row("  license", "%s", mi.License)
		if mi.SrcVersion != "" {
			row("  srcversion", "%s", mi.SrcVersion)
		}
		if len(mi.Depends) > 0 {
			row("  depends", "%s", strings.Join(mi.Depends, ","))
		}
		if len(mi.Functions) > 0 {
			row("  klp functions", "%s", strings.Join(mi.Functions, ", "))
		}
	} else if in.ModuleError != "" {
		row("  error", "%s", in.ModuleError)
	}
	row("signatures", "%d", len(in.Signatures))
	for i, s := range in.Signatures {
		if s.Created.IsZero() {
			row(fmt.Sprintf("  %d", i+1), "%s", s.Issuer)
			continue
		}
		line := fmt.Sprintf("%s %s %s %s", s.Issuer, s.Algorithm, s.Hash, s.Created.Format(time.RFC3339))
		if !s.Expires.IsZero() {
			line += " expires " + s.Expires.Format(time.RFC3339)
		}
		row(fmt.Sprintf("  %d", i+1), "%s", line)
	}
	return w.Flush()
}
