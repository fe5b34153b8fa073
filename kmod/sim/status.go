package sim

import (
	"fmt"
	"strings"
	"time"
)

// String describes the kernel in one line that starts with "SIMULATED
// kernel", so nothing that prints it passes it off as a real one.
func (k *Kernel) String() string {
	var line string
	err := k.do("status", func(s *state, _ time.Time) error {
		line = fmt.Sprintf("SIMULATED kernel %s %s (test double in %s): %d module(s), %d livepatch(es), taint %d",
			s.Identity.Release, s.Identity.Arch, k.dir, len(s.Modules), len(s.Patches), s.Taint)
		return nil
	})
	if err != nil {
		return fmt.Sprintf("SIMULATED kernel (test double in %s): %v", k.dir, err)
	}
	return line
}

// Status describes the kernel in full, over several lines: identity,
// taint, livepatches and modules. Its first line starts with "SIMULATED
// kernel".
func (k *Kernel) Status() (string, error) {
	var b strings.Builder
	err := k.do("status", func(s *state, now time.Time) error {
		id := s.Identity
		fmt.Fprintf(&b, "SIMULATED kernel (a test double, not a real kernel) in %s\n", k.dir)
		fmt.Fprintf(&b, "  release %s, arch %s, build id %s, livepatch %s\n", id.Release, id.Arch, id.BuildID, yesNo(id.Livepatch))
		fmt.Fprintf(&b, "  boot #%d, up %s\n", s.Boots, now.Sub(s.Boot).Round(time.Millisecond))
		fmt.Fprintf(&b, "  taint %d", s.Taint)
		if names := s.Taint.Names(); len(names) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(names, ", "))
		}
		b.WriteString("\n")
		for i, p := range s.Patches {
			st := "enabled"
			if !p.Enabled {
				st = "disabled"
			}
			if p.Transition != nil {
				st += ", in transition"
			}
			fmt.Fprintf(&b, "  livepatch %s: %s, stack order %d, replace %s, vmlinux patched %s\n",
				p.Name, st, i+1, yesNo(p.Replace), yesNo(p.Patched))
		}
		for _, m := range s.Modules {
			fmt.Fprintf(&b, "  module %s: %d bytes, Live %s", m.Name, m.Size, m.Taints)
			if len(m.Functions) > 0 {
				fmt.Fprintf(&b, ", replaces %s", strings.Join(m.Functions, ", "))
			}
			b.WriteString("\n")
		}
		return nil
	})
	return b.String(), err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
