package splice

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/splicefleet/splicefleet/internal/jsonkeys"
)

// Manifest describes a bundle. It is the signed part of the bundle and
// pins the module by digest.
type Manifest struct {
	// ID names the patch across versions, e.g. "cve-2024-1086".
	ID string `json:"id"`
	// Version only grows for one ID; hosts refuse to go back.
	Version uint64 `json:"version"`
	// Description says what the patch fixes, for people.
	Description string `json:"description,omitempty"`
	// CVEs the patch fixes.
	CVEs []string `json:"cves,omitempty"`
	// Target is the kernel the module was built for.
	Target Target `json:"target"`
	// Module pins the livepatch module.
	Module ModuleRef `json:"module"`
	// Replace is livepatch atomic replace: applying this patch replaces
	// every earlier livepatch on the host instead of stacking on them.
	Replace bool `json:"replace"`
	// Functions the module replaces.
	Functions []string `json:"functions"`
	// SourcePatch is the digest of the source patch create --patch made
	// the module from (the hex SHA-256 of its changes, see ksrc's
	// Patch.Digest): a later bundle built on top of this one names it.
	SourcePatch string `json:"source_patch,omitempty"`
	// OnTopOf lists the earlier updates the module was built on top of,
	// in the order they were applied: its functions carry their changes
	// too. A host applies the bundle only where each is applied (see
	// Host.Apply), and undoes none of them while the bundle is applied.
	OnTopOf []UpdateRef `json:"on_top_of,omitempty"`
	// Created is when the bundle was made.
	Created time.Time `json:"created"`
	// Expires, when set, is the time after which hosts refuse the bundle.
	Expires *time.Time `json:"expires,omitempty"`
}

// Target is the kernel a bundle applies to.
type Target struct {
	Release string `json:"release"`            // uname -r
	BuildID string `json:"build_id,omitempty"` // GNU build id of vmlinux, hex; optional
	Arch    string `json:"arch"`               // uname -m
}

// ModuleRef pins a module by name, digest and size.
type ModuleRef struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// UpdateRef names an earlier update by the digest of its source patch,
// as its bundle's manifest records it in source_patch.
type UpdateRef struct {
	SourcePatch string `json:"source_patch"`
	// Name is the patch file's name when the bundle was made, for people.
	Name string `json:"name,omitempty"`
}

var (
	idPattern       = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	cvePattern      = regexp.MustCompile(`^CVE-[0-9]{4}-[0-9]{4,7}$`)
	releasePattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$`)
	buildIDPattern  = regexp.MustCompile(`^[0-9a-f]{16,128}$`)
	archPattern     = regexp.MustCompile(`^[a-z0-9_]{1,16}$`)
	modNamePattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,55}$`)
	sha256Pattern   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	functionPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]{0,127}$`)
)

// Limits on manifest contents beyond the overall size limit.
const (
	maxDescription = 4096
	maxCVEs        = 64
	maxFunctions   = 1024
	maxOnTopOf     = 64
	maxUpdateName  = 255
)

// Validate checks every field. Verify calls it on every manifest it reads;
// New calls it before anything is signed.
func (m *Manifest) Validate() error {
	switch {
	case !idPattern.MatchString(m.ID):
		return fmt.Errorf("id %q: use 1 to 64 of a-z 0-9 . _ -, starting with a letter or digit", m.ID)
	case m.Version == 0:
		return fmt.Errorf("version must be at least 1")
	case len(m.Description) > maxDescription:
		return fmt.Errorf("description is %d bytes, limit %d", len(m.Description), maxDescription)
	case len(m.CVEs) > maxCVEs:
		return fmt.Errorf("%d CVE ids, limit %d", len(m.CVEs), maxCVEs)
	case !releasePattern.MatchString(m.Target.Release):
		return fmt.Errorf("target kernel release %q is not a kernel release", m.Target.Release)
	case m.Target.BuildID != "" && !buildIDPattern.MatchString(m.Target.BuildID):
		return fmt.Errorf("target build id %q must be lower-case hex", m.Target.BuildID)
	case !archPattern.MatchString(m.Target.Arch):
		return fmt.Errorf("target arch %q is not an architecture name", m.Target.Arch)
	case !modNamePattern.MatchString(m.Module.Name):
		return fmt.Errorf("module name %q: use 1 to 55 of A-Z a-z 0-9 _ -", m.Module.Name)
	case !sha256Pattern.MatchString(m.Module.SHA256):
		return fmt.Errorf("module sha256 %q must be 64 lower-case hex digits", m.Module.SHA256)
	case m.Module.Size <= 0 || m.Module.Size > MaxModuleSize:
		return fmt.Errorf("module size %d out of range 1..%d", m.Module.Size, MaxModuleSize)
	case len(m.Functions) == 0:
		return fmt.Errorf("no replaced functions listed")
	case len(m.Functions) > maxFunctions:
		return fmt.Errorf("%d functions, limit %d", len(m.Functions), maxFunctions)
	case m.Created.IsZero():
		return fmt.Errorf("created time is missing")
	case m.Expires != nil && !m.Expires.After(m.Created):
		return fmt.Errorf("expires %s is not after created %s", m.Expires.Format(time.RFC3339), m.Created.Format(time.RFC3339))
	}
	for _, c := range m.CVEs {
		if !cvePattern.MatchString(c) {
			return fmt.Errorf("CVE id %q is not of the form CVE-YYYY-NNNN", c)
		}
	}
	for _, f := range m.Functions {
		if !functionPattern.MatchString(f) {
			return fmt.Errorf("function %q is not a C symbol name", f)
		}
	}
	if err := m.validateOnTopOf(); err != nil {
		return err
	}
	if dup := firstDuplicate(m.Functions); dup != "" {
		return fmt.Errorf("function %q is listed twice", dup)
	}
	if dup := firstDuplicate(m.CVEs); dup != "" {
		return fmt.Errorf("CVE id %q is listed twice", dup)
	}
	return nil
}

// validateOnTopOf checks source_patch and on_top_of.
func (m *Manifest) validateOnTopOf() error {
	if m.SourcePatch != "" && !sha256Pattern.MatchString(m.SourcePatch) {
		return fmt.Errorf("source_patch %q must be 64 lower-case hex digits", m.SourcePatch)
	}
	if len(m.OnTopOf) == 0 {
		return nil
	}
	switch {
	case len(m.OnTopOf) > maxOnTopOf:
		return fmt.Errorf("%d earlier updates in on_top_of, limit %d", len(m.OnTopOf), maxOnTopOf)
	case m.Replace:
		return fmt.Errorf("an atomic-replace bundle replaces every earlier livepatch, so it cannot be built on top of one (on_top_of)")
	}
	seen := map[string]bool{}
	for _, u := range m.OnTopOf {
		switch {
		case !sha256Pattern.MatchString(u.SourcePatch):
			return fmt.Errorf("on_top_of: source_patch %q must be 64 lower-case hex digits", u.SourcePatch)
		case len(u.Name) > maxUpdateName || strings.ContainsFunc(u.Name, func(r rune) bool { return !unicode.IsPrint(r) }):
			return fmt.Errorf("on_top_of: name %q: use at most %d printable characters", u.Name, maxUpdateName)
		case u.SourcePatch == m.SourcePatch:
			return fmt.Errorf("on_top_of names the bundle's own source patch %s", u.SourcePatch)
		case seen[u.SourcePatch]:
			return fmt.Errorf("on_top_of: source patch %s is listed twice", u.SourcePatch)
		}
		seen[u.SourcePatch] = true
	}
	return nil
}

// Marshal encodes a valid manifest the way bundles store it: indented JSON
// with a final newline, so `splicefleet manifest` output reads well and
// signs the same everywhere.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	out = append(out, '\n')
	if len(out) > MaxManifestSize {
		return nil, fmt.Errorf("manifest: %d bytes exceeds the %d byte limit", len(out), MaxManifestSize)
	}
	return out, nil
}

// manifestKeys knows the manifest's field names, so that a key which
// reaches a field only when case is ignored is refused too.
var manifestKeys = jsonkeys.For(Manifest{})

// ParseManifest decodes manifest bytes strictly: unknown fields, trailing
// data and invalid values are errors, and so is a key that another reader
// would read differently (given twice, twice in different case, or a field
// name in another case: ErrDuplicateKey). Callers that act on a manifest
// get it from Verify, which parses only after the signatures held.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, reject(ErrTooLarge, "manifest is %d bytes, limit %d", len(data), MaxManifestSize)
	}
	if err := manifestKeys.Check(data); err != nil {
		if errors.Is(err, jsonkeys.ErrDuplicateKey) {
			return nil, &RejectError{Reason: ErrDuplicateKey, Err: err}
		}
		return nil, &RejectError{Reason: ErrManifest, Err: err}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, reject(ErrManifest, "%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, reject(ErrManifest, "data after the manifest object")
	}
	if err := m.Validate(); err != nil {
		return nil, reject(ErrManifest, "%v", err)
	}
	return &m, nil
}

// Digest is the hex SHA-256 of b, as manifests record module digests.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func firstDuplicate(list []string) string {
	sorted := slices.Clone(list)
	slices.Sort(sorted)
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return sorted[i]
		}
	}
	return ""
}
