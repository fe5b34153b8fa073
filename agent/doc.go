// Package agent wires splicefleet's parts into what runs on a host. Today
// that is the host lifecycle: it opens a kernel backend by name (the real
// Linux kernel, or the simulated kernel of package kmod/sim), adapts it to
// the small Kernel interface package splice declares, and reads module
// metadata for splice's checks, so that splice itself never imports kmod.
// The fleet daemon (gossip, rollouts, HTTP and metrics) grows here too.
//
// Dependencies point inward: cmd uses agent; agent uses splice, signing and
// kmod; none of those import agent.
package agent
