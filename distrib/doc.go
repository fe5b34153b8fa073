// Package distrib moves verified bundles between hosts: a content-addressed
// store ([Store]), the read-only blob service every agent runs for its
// peers ([BlobServer]), and the fetcher that downloads a bundle from
// peers and checks it before anything of it is kept ([Fetcher]). It knows
// nothing of gossip, rollouts or the kernel: the agent (package agent)
// decides what to fetch, from which members, and when, and passes in the
// trust policy that judges a head.
//
// The store keeps DIR/heads/<manifest sha256>.json (the manifest and its
// signatures, the head wire format) and DIR/modules/<module sha256>
// (the module). Every file arrives as a synced "*.unverified" file renamed
// into place once checked (internal/atomicfile), so a crash leaves either
// nothing or a whole, verified file; leftovers are removed at open.
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
