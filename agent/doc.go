// Package agent is splicefleet's daemon and the wiring of its parts on a
// host.
//
// The host side opens a kernel backend by name (the real Linux kernel, or
// the simulated kernel of package kmod/sim), adapts it to the small Kernel
// interface package splice declares, and reads module metadata for
// splice's checks, so that splice itself never imports kmod. Before it
// starts, the agent refuses what would make its first apply fail and halt
// a rollout across the fleet (kernel: linux without CAP_SYS_MODULE, or
// with the kernel log or the livepatch interface out of reach), the
// simulated kernel without Config.UnsafeSimulatedKernel (and says at WARN
// that it runs one; its hosts gossip the sf.sim tag, and plans without
// allow_simulated leave them out), and a keyring another user may change
// (package internal/fileperm), which a reload refuses too, keeping the
// policy it had. [CheckConfig] makes the same checks without starting
// anything, for `splicefleet agent --check-config`.
//
// The fleet side is [Agent]: a member of an encrypted serf cluster
// (package gossip) with no central server. A bundle published at any agent
// is verified there, stored content-addressed ([splice.Store]) and announced in a
// small gossip event. Every agent that hears the announcement fetches the
// bundle from its peers' blob services ([distrib.BlobServer], read-only and
// content-addressed), trying peers before the origin: first the head
// (manifest and signatures), which must match the announced digest and
// satisfy the trust policy, and only then the module, capped at the size
// the signed manifest states and hashed as it lands as an .unverified file
// ([distrib.Fetcher]). A refused digest is remembered for a while and not fetched
// again. Gossip delivery is not guaranteed, so anti-entropy asks a random
// peer for its index every Config.AntiEntropy and fetches what is missing.
// Only blob addresses that members advertise are fetched from, every
// request and fetch has a deadline, and a source that timed out is asked
// last for a while. Gossip events carry no sender, so each background
// fetch is charged to the member it was learned from, within a budget,
// and fetches anti-entropy pulls have a pool of their own: a member
// flooding announcements whose origin trickles cannot starve the others'
// (queue.go). The blob service believes a fetcher's claim to hold a module
// only for a member's advertised address, so only members are named in
// its seeding referrals.
// Agents publish their kernel, agent version and holdings in their gossip
// tags, which the fleet views read. What the agent holds is a copy for
// distribution in the host's one bundle store:
// a bundle no live rollout needs (its rollouts halted, were revoked or
// expired, it expired, or it was published without a plan) is dropped
// after Config.BundleRetention, or at once by a forget (local, or a
// signed command every agent verifies), and remembered so that
// anti-entropy does not bring it back; a bundle a running, paused or done
// rollout rolls out is kept. A dropped bundle's bytes stay, for this
// host alone, while the host's journal needs them (splice.Store).
//
// Rollouts (package rollout decides, this package acts): a signed plan
// published at one agent is announced in a small gossip event, fetched and
// verified by every agent (its bundle first), and judged by each on its
// own from the members' tags, which carry every host's state in its last
// rollouts. When the judgement puts this host in an open stage, the agent
// applies the bundle through the host lifecycle (package splice) and
// watches the host for the plan's health window (transition, taint,
// kernel log, the operator's health command). A failure undoes the patch,
// is gossiped at once as a failure report and lasts in the tags; a halt
// rolls the patch back where the plan says so. Operator commands travel
// like plans; every agent refuses, and counts, the ones a rollout's end
// leaves without effect (rollout.CheckCommand). Judgement rounds run on gossip events and a tick, at most
// one per tick; failure reports are judged the moment they arrive. Each
// rollout's state is kept in the state directory, so a restart resumes
// it. Judgement starts with the agent, while serf's join (and its
// snapshot rejoin) run in the background, so right after a start the
// member list may hold only this host: until the agent has joined (its
// join succeeded, or another member is alive in its list, which means
// serf exchanged full state with a peer), its views are marked joining
// and open no stage and apply nothing; halts and rollbacks still act.
//
// Only cmd parses flags and files; the agent takes a [Config] (strict YAML,
// documented defaults) and Options. Everything that changes state goes
// through the control API on a unix socket of mode 0600, in a folder no
// other user can change; its client ([ControlClient]) checks the peer's
// credentials before it sends anything (see control.go). Check judges a
// bundle and its plan as publishing them would and changes nothing, so
// that publish sends nothing the agents would refuse. The TCP listener
// serves only /healthz, /metrics (package metrics), the index, the blob
// service and what this host reports of its rollouts (a failed health
// command by its class only); it caps its connections in all and per
// source, times out idle and slow ones, and leaves the process's file
// descriptors to the rest of the agent (see listener.go).
//
// Dependencies point inward: cmd uses agent; agent uses gossip, rollout,
// metrics, splice, signing and kmod; none of those import agent.
package agent
