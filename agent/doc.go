// Package agent is splicefleet's daemon and the wiring of its parts on a
// host.
//
// The host side opens a kernel backend by name (the real Linux kernel, or
// the simulated kernel of package kmod/sim), adapts it to the small Kernel
// interface package splice declares, and reads module metadata for
// splice's checks, so that splice itself never imports kmod.
//
// The fleet side is [Agent]: a member of an encrypted serf cluster
// (package gossip) with no central server. A bundle published at any agent
// is verified there, stored content-addressed ([Store]) and announced in a
// small gossip event. Every agent that hears the announcement fetches the
// bundle from its peers' blob services ([BlobServer], read-only and
// content-addressed), trying peers before the origin: first the head
// (manifest and signatures), which must match the announced digest and
// satisfy the trust policy, and only then the module, capped at the size
// the signed manifest states and hashed as it lands as an .unverified file
// ([Fetcher]). A refused digest is remembered for a while and not fetched
// again. Gossip delivery is not guaranteed, so anti-entropy asks a random
// peer for its index every Config.AntiEntropy and fetches what is missing.
// Agents publish their kernel, agent version and holdings in their gossip
// tags, which the fleet views read.
//
// Only cmd parses flags and files; the agent takes a [Config] (strict YAML,
// documented defaults) and Options. Everything that changes state goes
// through the control API on a root-only unix socket; the TCP listener
// serves only /healthz, /metrics (package metrics), the index and the blob
// service.
//
// Dependencies point inward: cmd uses agent; agent uses gossip, splice,
// signing and kmod; none of those import agent.
package agent
