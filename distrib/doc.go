// Package distrib moves verified bundles between hosts: the read-only
// blob service every agent runs for its peers ([BlobServer]), and the
// fetcher that downloads a bundle from peers and checks it before
// anything of it is kept ([Fetcher]). It knows nothing of gossip,
// rollouts or the kernel: the agent (package agent) decides what to
// fetch, from which members, and when, and passes in the trust policy
// that judges a head.
//
// What it fetches goes into, and what it serves comes from, the host's
// one bundle store, [splice.Store]: the manifest and its signatures (the
// head, in the wire format splice.EncodeHead writes) and the module, each
// stored once, content-addressed. A module download streams into a
// synced "*.unverified" file (splice.Store.CreateModule) renamed into
// place only once its digest matched, so a crash leaves either nothing
// or a whole, verified file.
//
// A fetch asks peers before the origin: first the head, which must match
// the wanted manifest digest and pass the trust policy, and only then the
// module, cut off at the size the signed manifest states and hashed as it
// lands. Every request has a deadline, a whole fetch has a time bound, a
// source that timed out is demoted for a while, and only addresses the
// caller allows (members' advertised blob services) are asked. A digest
// refused is remembered for a while and not fetched again.
//
// The blob service serves heads and modules by digest (HeadsPath,
// ModulesPath), bounds its concurrent uploads, and seeds: an origin
// uploads a new module a few times (SeedCopies) and then refers fetchers
// to the peers that fetched it (PeersHeader). It believes a fetcher's
// claim to hold a module (HolderHeader) only for an address the caller
// says is a member's, so a host without the gossip key cannot aim the
// fleet at servers of its choosing.
package distrib
