package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// deprecatedAlias returns cmd, a command group built anew for the
// purpose, under the old name it had: hidden from help, suggestions and
// completion, and working as before for a release, except that every
// command under it says on stderr (never stdout, which scripts redirect,
// as in `keys generate > gossip.keys`) which name replaces it.
func deprecatedAlias(e *env, old string, cmd *cobra.Command) *cobra.Command {
	current := cmd.Name()
	cmd.Use = old + strings.TrimPrefix(cmd.Use, current)
	cmd.Hidden = true
	cmd.Long = fmt.Sprintf("Deprecated: %q is the old name of %q, kept for a release.\n\n", old, current) + cmd.Long
	var note func(c *cobra.Command)
	note = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			note(sub)
		}
		if c.RunE == nil {
			return
		}
		prev := c.PreRunE
		c.PreRunE = func(c *cobra.Command, args []string) error {
			path := strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
			replacement := current + strings.TrimPrefix(path, old)
			fmt.Fprintf(e.stderr, "splicefleet: %q is deprecated and will be removed in a future release: use %q\n", path, replacement)
			if prev != nil {
				return prev(c, args)
			}
			return nil
		}
	}
	note(cmd)
	return cmd
}
