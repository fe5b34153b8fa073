package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// newGenDocsCmd writes the man pages (man.go: a page per command in
// section 1, and the configuration's page in section 5) and the shell
// completions the Debian package ships, generated from this command tree so they cannot drift
// from it. It is hidden: packagers run it, users read what it wrote.
func newGenDocsCmd(e *env) *cobra.Command {
	var manDir, completionDir string
	cmd := &cobra.Command{
		Use:    "gendocs --man DIR --completions DIR",
		Short:  "Write man pages and shell completions (for packaging)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if manDir == "" && completionDir == "" {
				return fmt.Errorf("give --man DIR, --completions DIR or both")
			}
			root := cmd.Root()
			if manDir != "" {
				if err := writeManPages(root, manDir); err != nil {
					return fmt.Errorf("man pages: %w", err)
				}
			}
			if completionDir != "" {
				for _, c := range []struct {
					path string
					gen  func(string) error
				}{
					{"bash/splicefleet", func(p string) error { return root.GenBashCompletionFileV2(p, true) }},
					{"zsh/_splicefleet", root.GenZshCompletionFile},
					{"fish/splicefleet.fish", func(p string) error { return root.GenFishCompletionFile(p, true) }},
				} {
					p := filepath.Join(completionDir, c.path)
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						return err
					}
					if err := c.gen(p); err != nil {
						return fmt.Errorf("completion %s: %w", c.path, err)
					}
				}
			}
			_, err := fmt.Fprintf(e.stdout, "wrote man pages to %q and completions to %q\n", manDir, completionDir)
			return err
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "folder for the man pages (section 1, and "+configPageName+".5)")
	cmd.Flags().StringVar(&completionDir, "completions", "", "folder for bash/, zsh/ and fish/ completions")
	return cmd
}
