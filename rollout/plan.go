package rollout

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/splicefleet/splicefleet/internal/jsonkeys"
)

// MaxPlanSize bounds a plan document.
const MaxPlanSize = 16 << 10

// Limits of a plan.
const (
	maxStages  = 32
	maxTargets = 64
	// Buckets is how many buckets hosts are hashed into; a stage's share
	// is a number of buckets, so percentages have two decimals.
	Buckets = 10000
)

// RingTag is the user tag that places a host in a ring stage.
const RingTag = "ring"

// What a halt does.
const (
	OnHaltRollback = "rollback" // undo the patch wherever the rollout applied it
	OnHaltStop     = "halt"     // stop applying, keep what is applied
)

// Plan is a signed rollout plan. Its YAML schema is documented in
// docs/rollouts.md; decoding is strict (an unknown key is an error).
type Plan struct {
	// ID names the rollout and seeds the hosts' buckets:
	// ^[a-z0-9][a-z0-9._-]{0,63}$.
	ID string `yaml:"id"`
	// Bundle is the manifest digest (hex SHA-256) of the bundle to roll
	// out.
	Bundle string `yaml:"bundle"`
	// Description is for people.
	Description string `yaml:"description,omitempty"`
	// Target narrows the hosts beyond the bundle's own kernel target.
	Target Target `yaml:"target,omitempty"`
	// Stages in order: ring stages first, then increasing percentages.
	Stages []Stage `yaml:"stages"`
	// Gates decide when a stage passed and when the rollout halts.
	Gates Gates `yaml:"gates,omitempty"`
	// OnHalt is "rollback" (default) or "halt".
	OnHalt string `yaml:"on_halt,omitempty"`
	// Expires, when set, ends the rollout: no host applies it afterwards.
	Expires *time.Time `yaml:"expires,omitempty"`
	// AllowSimulated lets hosts that run the simulated kernel (a test
	// double, kmod/sim) take part. Without it they are in no cohort and
	// apply nothing: a host set up for a test or a demo never counts as a
	// healthy canary of a real rollout.
	AllowSimulated bool `yaml:"allow_simulated,omitempty"`
}

// Target selects hosts. Empty fields select every host.
type Target struct {
	// Kernels are kernel releases (uname -r); a host must run one of them.
	Kernels []string `yaml:"kernels,omitempty"`
	// Tags must all match the host's user tags.
	Tags map[string]string `yaml:"tags,omitempty"`
}

// Stage is one step of a rollout: a ring, or a percentage of the targeted
// hosts.
type Stage struct {
	// Ring names a value of the hosts' "ring" tag (for example canary).
	Ring string `yaml:"ring,omitempty"`
	// Percent of the targeted hosts, 0 < percent <= 100, two decimals.
	Percent float64 `yaml:"percent,omitempty"`
	// Soak is how long the stage must stay healthy before the next opens.
	Soak time.Duration `yaml:"soak,omitempty"`
}

// Share is the stage's number of buckets (percent stages only).
func (s Stage) Share() int { return int(math.Round(s.Percent * 100)) }

// Name is how the stage is shown: "ring canary" or "10%".
func (s Stage) Name() string {
	if s.Ring != "" {
		return "ring " + s.Ring
	}
	return fmt.Sprintf("%g%%", s.Percent)
}

// Gates are the rollout's health gates.
type Gates struct {
	// MaxFailures halts the rollout when this many hosts failed (default
	// 1; 0 keeps the default, -1 disables the count and leaves only the
	// ratio).
	MaxFailures int `yaml:"max_failures,omitempty"`
	// MaxFailureRatio halts the rollout when the failed share of the
	// opened stages' hosts is above it (0 disables it).
	MaxFailureRatio float64 `yaml:"max_failure_ratio,omitempty"`
	// MinHealthy is the share of a stage's hosts that must report healthy
	// before the next stage opens (default 1: all of them).
	MinHealthy float64 `yaml:"min_healthy,omitempty"`
	// HealthWindow is how long a host watches itself after applying
	// before it reports healthy (default 1m).
	HealthWindow time.Duration `yaml:"health_window,omitempty"`
}

// Defaults of a plan's gates.
const (
	DefaultMaxFailures  = 1
	DefaultMinHealthy   = 1.0
	DefaultHealthWindow = time.Minute
)

var (
	// ErrInvalidPlan reports a plan that does not decode or validate.
	ErrInvalidPlan = errors.New("invalid rollout plan")
	idPattern      = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	digestPattern  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	tagPattern     = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// DecodePlan parses and validates a plan, strictly, and fills the
// defaults. It reads at most MaxPlanSize bytes.
func DecodePlan(data []byte) (*Plan, error) {
	if len(data) > MaxPlanSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidPlan, len(data), MaxPlanSize)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPlan, err)
	}
	if err := checkYAMLKeys(&root, "$", 0); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPlan, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var p Plan
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty", ErrInvalidPlan)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidPlan, nameFields(data, err))
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrInvalidPlan)
	}
	p.defaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// maxYAMLDepth bounds how deeply a plan may nest; a plan nests three
// levels.
const maxYAMLDepth = jsonkeys.MaxDepth

// checkYAMLKeys refuses a mapping with two keys equal when case is
// ignored, anywhere in a plan: yaml.v3 refuses exact duplicates itself,
// but a plan written as JSON is read by reviewers with JSON tools, and
// tags that differ only in case read as one to some and two to others.
// Aliases are not followed (what they point to is checked where it is
// defined).
func checkYAMLKeys(n *yaml.Node, path string, depth int) error {
	if depth > maxYAMLDepth {
		return fmt.Errorf("nested more than %d levels at %s", maxYAMLDepth, path)
	}
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = fmt.Sprintf("%s[%d]", path, i)
			}
			if err := checkYAMLKeys(c, p, depth+1); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		seen := map[string]string{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.AliasNode && k.Alias != nil {
				k = k.Alias
			}
			if k.Kind != yaml.ScalarNode {
				return fmt.Errorf("a key at %s (line %d) is not a scalar", path, k.Line)
			}
			f := jsonkeys.Fold(k.Value)
			if first, dup := seen[f]; dup {
				return &jsonkeys.KeyError{Path: fmt.Sprintf("%s (line %d)", path, k.Line), Key: k.Value, Other: first}
			}
			seen[f] = k.Value
			if err := checkYAMLKeys(v, path+"."+k.Value, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// nameFields rewrites the YAML decoder's type errors, which say only
// "line 4: cannot unmarshal !!float `.inf` into time.Duration", to name
// the field too ("line 4: gates.health_window: ..."). Other errors are
// returned as they are.
func nameFields(data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return err
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		var line int
		_, _ = fmt.Sscanf(e, "line %d:", &line)
		value := ""
		if i := strings.IndexByte(e, '`'); i >= 0 {
			if j := strings.IndexByte(e[i+1:], '`'); j >= 0 {
				value = e[i+1 : i+1+j]
			}
		}
		if path := fieldAt(&root, "", line, value); path != "" {
			if rest, ok := strings.CutPrefix(e, fmt.Sprintf("line %d: ", line)); ok {
				e = fmt.Sprintf("line %d: %s: %s", line, path, rest)
			}
		}
		msgs = append(msgs, e)
	}
	return fmt.Errorf("yaml: %s", strings.Join(msgs, "; "))
}

// fieldAt finds the path ("gates.health_window", "stages[2].soak") of the
// scalar on line whose text is value.
func fieldAt(n *yaml.Node, path string, line int, value string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p := fieldAt(c, path, line, value); p != "" {
				return p
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if path != "" {
				key = path + "." + key
			}
			if p := fieldAt(n.Content[i+1], key, line, value); p != "" {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if p := fieldAt(c, fmt.Sprintf("%s[%d]", path, i+1), line, value); p != "" {
				return p
			}
		}
	case yaml.ScalarNode:
		if n.Line == line && (value == "" || n.Value == value) {
			return path
		}
	}
	return ""
}

func (p *Plan) defaults() {
	if p.OnHalt == "" {
		p.OnHalt = OnHaltRollback
	}
	if p.Gates.MaxFailures == 0 {
		p.Gates.MaxFailures = DefaultMaxFailures
	}
	if p.Gates.MinHealthy == 0 {
		p.Gates.MinHealthy = DefaultMinHealthy
	}
	if p.Gates.HealthWindow == 0 {
		p.Gates.HealthWindow = DefaultHealthWindow
	}
}

// Validate checks every field and says what is wrong with all of them.
func (p *Plan) Validate() error {
	var bad []string
	if !idPattern.MatchString(p.ID) {
		bad = append(bad, fmt.Sprintf("id %q must match %s", p.ID, idPattern))
	}
	if !digestPattern.MatchString(p.Bundle) {
		bad = append(bad, fmt.Sprintf("bundle %q must be a manifest digest (64 lowercase hex digits; splicefleet inspect shows it)", p.Bundle))
	}
	if len(p.Target.Kernels) > maxTargets || len(p.Target.Tags) > maxTargets {
		bad = append(bad, fmt.Sprintf("target: at most %d kernels and %d tags", maxTargets, maxTargets))
	}
	for _, k := range p.Target.Kernels {
		if k == "" || len(k) > 128 || strings.ContainsAny(k, " \t\n,") {
			bad = append(bad, fmt.Sprintf("target kernel %q is not a kernel release", k))
		}
	}
	for k, v := range p.Target.Tags {
		if !tagPattern.MatchString(k) || len(v) > 128 {
			bad = append(bad, fmt.Sprintf("target tag %q=%q is not a valid tag", k, v))
		}
	}
	bad = append(bad, p.validateStages()...)
	g := p.Gates
	if g.MaxFailures < -1 {
		bad = append(bad, "gates.max_failures must be -1 (off) or positive")
	}
	// Floats are checked for being finite first: NaN compares false
	// with every bound, so a range check alone lets it through.
	if !finite(g.MaxFailureRatio) || g.MaxFailureRatio < 0 || g.MaxFailureRatio >= 1 {
		bad = append(bad, fmt.Sprintf("gates.max_failure_ratio %g must be a finite number in [0, 1)", g.MaxFailureRatio))
	}
	if g.MaxFailures == -1 && g.MaxFailureRatio == 0 {
		bad = append(bad, "gates: with max_failures -1, set max_failure_ratio (a rollout must be able to halt)")
	}
	if !finite(g.MinHealthy) || g.MinHealthy <= 0 || g.MinHealthy > 1 {
		bad = append(bad, fmt.Sprintf("gates.min_healthy %g must be a finite number in (0, 1]", g.MinHealthy))
	}
	if g.HealthWindow < 0 || g.HealthWindow > 24*time.Hour {
		bad = append(bad, "gates.health_window must be between 0 and 24h")
	}
	if p.OnHalt != OnHaltRollback && p.OnHalt != OnHaltStop {
		bad = append(bad, fmt.Sprintf("on_halt %q must be %q or %q", p.OnHalt, OnHaltRollback, OnHaltStop))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidPlan, strings.Join(bad, "; "))
	}
	return nil
}

func (p *Plan) validateStages() []string {
	var bad []string
	if len(p.Stages) == 0 {
		return []string{"a plan needs stages (for example: [{ring: canary}, {percent: 10, soak: 10m}, {percent: 100}])"}
	}
	if len(p.Stages) > maxStages {
		bad = append(bad, fmt.Sprintf("at most %d stages", maxStages))
	}
	rings := map[string]bool{}
	lastShare, sawPercent := 0, false
	for i, s := range p.Stages {
		where := fmt.Sprintf("stage %d", i+1)
		switch {
		case s.Ring != "" && s.Percent != 0:
			bad = append(bad, where+": a stage is a ring or a percentage, not both")
		case s.Ring != "":
			if sawPercent {
				bad = append(bad, where+": ring stages come before percentage stages")
			}
			if !tagPattern.MatchString(s.Ring) {
				bad = append(bad, fmt.Sprintf("%s: ring %q is not a valid tag value", where, s.Ring))
			}
			if rings[s.Ring] {
				bad = append(bad, fmt.Sprintf("%s: ring %q appears twice", where, s.Ring))
			}
			rings[s.Ring] = true
		default:
			sawPercent = true
			share := 0
			if finite(s.Percent) {
				share = s.Share()
			}
			if !finite(s.Percent) || s.Percent <= 0 || s.Percent > 100 || share < 1 {
				bad = append(bad, fmt.Sprintf("%s: percent %g must be a finite number in (0, 100] (at least 0.01)", where, s.Percent))
			} else if share <= lastShare {
				bad = append(bad, fmt.Sprintf("%s: percent %g must be above the stage before", where, s.Percent))
			}
			lastShare = max(lastShare, share)
		}
		if s.Soak < 0 || s.Soak > 30*24*time.Hour {
			bad = append(bad, where+": soak must be between 0 and 720h")
		}
	}
	return bad
}

// finite reports whether f is a number: not NaN (YAML .nan) and not
// infinite (.inf, -.inf).
func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Encode returns the plan as YAML.
func (p *Plan) Encode() ([]byte, error) { return yaml.Marshal(p) }

// FillBundle returns a plan that leaves bundle: out with bundle: digest
// added as its first key, and whether it added it; a plan that names a
// bundle comes back as it is. The rest of the plan keeps its bytes
// (comments, order, layout), so a signer reads what the file says. Only
// a block-style mapping is filled in.
func FillBundle(data []byte, digest string) ([]byte, bool, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrInvalidPlan, err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return data, false, nil // DecodePlan says what is wrong with it
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "bundle" {
			return data, false, nil
		}
	}
	if m.Style&yaml.FlowStyle != 0 || len(m.Content) == 0 || m.Content[0].Column != 1 {
		return nil, false, fmt.Errorf("%w: bundle: is left out, and it is filled in only in a plan written as a block mapping (one key per line); add bundle: %s", ErrInvalidPlan, digest)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	at := m.Content[0].Line - 1
	if at < 0 || at > len(lines) {
		return nil, false, fmt.Errorf("%w: bundle: is left out and cannot be filled in; add bundle: %s", ErrInvalidPlan, digest)
	}
	out := make([]byte, 0, len(data)+len(digest)+10)
	for _, l := range lines[:at] {
		out = append(out, l...)
	}
	out = append(out, "bundle: "+digest+"\n"...)
	for _, l := range lines[at:] {
		out = append(out, l...)
	}
	return out, true, nil
}
