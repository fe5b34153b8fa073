// Command corpus measures `splicefleet create --patch` on a corpus of real
// kernel fixes, as the Ksplice paper measured Ksplice on three years of
// Linux security fixes: for every fix, whether the target kernel's
// configuration builds it, whether create --patch makes a bundle of it
// (or refuses it, and why), and whether that bundle passes a check in a
// real guest of the target kernel under QEMU (applied, transition
// finished, enabled in sysfs, a short workload with no Oops, WARN or new
// taint, undone). `make corpus` runs it; docs/create-patch.md describes
// the method and cites the results.
//
// The public corpus is the update of Debian's linux-source-6.1 from
// 6.1.187-1 to 6.1.190-1, measured against the kernel of 6.1.187-1 (ABI
// 6.1.0-53, cloud-amd64): both source trees are diffed and the diff is
// split into units, one per upstream change Debian's changelog lists (see
// package corpus for how hunks are attributed). Settings, from the
// environment:
//
//	CORPUS_ABI      the target kernel's ABI (default 6.1.0-53)
//	CORPUS_VERSION  its package version, checked against the archive's (default: the archive's)
//	CORPUS_TO       the later source version of the public corpus (default 6.1.190-1)
//	CORPUS_PATCHES  a folder of *.patch files to run instead, one fix each
//	CORPUS_SAMPLE   run a seeded sample of N units the configuration builds
//	CORPUS_SEED     the sample's seed (default 1)
//	CORPUS_UNITS    run only these units, by id, comma-separated (c0029,f:lib/x.c)
//	CORPUS_RESULTS  the results file (JSON lines); default under docs/corpus/
//	                for the public corpus, .cache/corpus/ otherwise
//	CORPUS_MAX_HEADER_UNITS  create's --max-header-units (default: create's)
//	CORPUS_EXPORT   write the chosen units' patches to this folder, one
//	                ID.patch each (":" and "/" of the id as "_"), and run
//	                nothing: `splicefleet create --patch` reproduces a
//	                unit's outcome by hand
//
// A unit already in the results file is not run again, so a stopped run
// resumes. The last line printed reads
// "corpus: U units built for this configuration, C bundles created, G
// passed the guest check (P%)".
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	line, err := run(ctx, os.Getenv, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "corpus: %v\n", err)
		if line != "" {
			fmt.Println(line)
		}
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// run is the whole tool; it returns the summary line it printed last (or
// would have, when it stopped early).
func run(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) (string, error) {
	cfg, err := configFrom(getenv)
	if err != nil {
		return "", err
	}
	return measure(ctx, cfg, stdout, stderr)
}
