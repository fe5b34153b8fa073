package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/objdiff"
)

func newDiffCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "diff [--json] PRE.o POST.o",
		Short: "Compare two object files and say whether a livepatch can carry the change",
		Long: `Compare two relocatable x86-64 objects built from the same source before and
after a fix (with -ffunction-sections -fdata-sections, and -g for the inline
and prototype checks). Print the functions that changed, were added and were
removed, then what a livepatch cannot carry: changed or new data, init code,
changed prototypes, inlined functions whose callers must be patched with
them, and changes in sections objdiff does not understand.

Exit codes: 0 the change can be livepatched, 1 it cannot (the reasons go to
stderr as well), 2 an object could not be read. --json prints the whole
result, in either case. See docs/diff.md.`,
		Example: `  splicefleet diff pre/af_unix.o post/af_unix.o
  splicefleet diff --json pre/af_unix.o post/af_unix.o > diff.json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pre, err := readFile(args[0], objdiff.MaxObjectSize)
			if err != nil {
				return err
			}
			post, err := readFile(args[1], objdiff.MaxObjectSize)
			if err != nil {
				return err
			}
			res, err := objdiff.Diff(args[0], pre, args[1], post)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else if err := printDiff(e, res); err != nil {
				return err
			}
			if err := res.Err(); err != nil {
				return &refusal{err}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func printDiff(e *env, r *objdiff.Result) error {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	functions := func(title string, fs []objdiff.Function, detail func(objdiff.Function) string) {
		fmt.Fprintf(w, "%s functions: %d\n", title, len(fs))
		for _, f := range fs {
			fmt.Fprintf(w, "  %s\t%s\t%s\n", f.Name, f.Section, detail(f))
		}
	}
	functions("changed", r.Changed, func(f objdiff.Function) string { return f.Reason })
	functions("added", r.Added, func(f objdiff.Function) string {
		if len(f.Callers) == 0 {
			return "not referred to"
		}
		return "referred to by " + strings.Join(f.Callers, ", ")
	})
	functions("removed", r.Removed, func(objdiff.Function) string { return "" })
	if len(r.AddedData) > 0 {
		fmt.Fprintf(w, "added variables: %d\n", len(r.AddedData))
		for _, v := range r.AddedData {
			fmt.Fprintf(w, "  %s\t%s\t%d bytes: the patch module carries its only copy\n", v.Name, v.Section, v.Size)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if r.Safe() {
		fmt.Fprintf(w, "%s -> %s can be livepatched\n", r.Pre, r.Post)
		return w.Flush()
	}
	fmt.Fprintln(w, "cannot be livepatched:")
	for _, p := range r.Unsafe {
		fmt.Fprintf(w, "  %s\t%s\t%s\n", p.Kind, p.Name, p.Reason)
	}
	return w.Flush()
}
