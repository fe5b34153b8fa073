// Package metrics defines every metric the splicefleet agent exports on
// its /metrics endpoint, in the Prometheus text format, and nothing else:
// the agent wires its parts to it, and the dashboards and alert rules in
// dashboards/ query it.
//
// # Two kinds of metric
//
// What describes state is read at scrape time, by a collector, from the
// place that holds the truth, so it can never drift from it:
//
//   - the host's patches, from the journal in the state directory
//     ([splice.ReadPatches], without taking the lock). Patches applied by
//     `splicefleet apply` on the command line show as soon as the journal
//     is written, whether or not the agent did anything;
//   - the kernel's own view (its identity, every livepatch's enabled and
//     transition flags, the taint flags), through a [KernelReader];
//   - the verified bundles the agent holds, and whether this host still
//     lacks one that a live (running or paused) rollout targets it with
//     ([Bundle.Wanted]): a bundle held only for distribution is never
//     outstanding;
//   - counters other packages already keep (gossip.Stats, the fetcher's
//     and the blob server's), copied into const metrics at each scrape;
//   - the rollouts the agent follows, as the rollout engine last judged
//     them ([Sources.Rollouts], a list of [rollout.Status]; the scrape
//     does not judge them again): each one's state, open stage and
//     number of stages, the open stage's cohort by status, and this
//     host's own state in it.
//
// What happens is counted as it happens, through methods the agent calls:
// [Metrics.ObserveApply], [Metrics.ObserveUndo], [Metrics.ObserveTransition],
// [Metrics.ObserveFetch], [Metrics.Rollback], and for rollouts
// [Metrics.RolloutRefused] (a signed plan or command refused) and
// [Metrics.RolloutBadEvent] (a rollout gossip event that did not
// decode), and [Metrics.BundleDropped] (a bundle dropped from the store
// by retention or forget). Counters with labels are
// created with every label value of their closed set at zero, so rate()
// and alerts see a series before the first event.
//
// # Conventions and bounds
//
// Every name starts with splicefleet_, durations are histograms in
// seconds, byte counts are in bytes, counters end in _total. Every label
// has a bounded set of values:
//
//   - closed sets fixed here: result ([Result]), reason ([RollbackReason],
//     splice.ReasonLabels for verification failures, fetch failures),
//     state (splice's patch states, the rollout states, the host states
//     of a rollout), status (serf's member statuses, a cohort's
//     statuses), queue, kind, source, event, flag (the kernel's taint flag
//     names, plus "bitN" for the few bits without a name);
//   - values from signed manifests and plans, which splice and rollout
//     validate: patch (at most 64 characters of a-z 0-9 . _ -), version,
//     module, cve, rollout (the plan ID, the same characters). Their
//     number is bounded per scrape: at most [MaxPatches] journal patches
//     (live ones first, then the most recently changed), [MaxBundles]
//     held bundles (newest first) and [MaxRollouts] rollouts (the most
//     recently accepted); what is left out is counted in
//     splicefleet_scrape_items_omitted;
//   - the kernel's livepatch names (module names, at most 55 characters),
//     as many as the kernel has loaded.
//
// The exposition of an agent holding 50 patches (and their 50 bundles)
// is about 51 KB, under the 64 KiB BenchmarkScrape in package agent
// allows. A scrape reads the journal again only when it was replaced, and
// the kernel's identity once a minute.
//
// # One registry per agent
//
// [New] makes a fresh prometheus.Registry; nothing is registered with the
// global one, so tests can run many agents in one process.
//
// # Adding metrics
//
// State another part of the agent holds is best read by this package's
// collector through a new field of [Sources], as the rollouts are: the
// series then share splicefleet_scrape_items_omitted and the scrape's
// one pass over the sources. Other parts may add metrics of their own
// with [Metrics.Register]: they pass a prometheus.Collector, usually one
// that reads their state at scrape time the way this package's collector
// reads the journal. Names follow the same rules, under their own prefix,
// with label values from closed sets or from signed input; the golden
// exposition in testdata then records them (go test ./metrics -update),
// and the dashboards test checks every panel against it. Events that mean
// a patch was taken back off a host are counted with [Metrics.Rollback]
// and one of the reasons of [RollbackReason], never a new label value.
package metrics
