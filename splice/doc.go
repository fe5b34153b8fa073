// Package splice is splicefleet's update model: the update bundle, its
// manifest, and the per-host lifecycle that applies and undoes bundles. It
// declares the small interfaces it needs from the outside world ([Verifier],
// [Kernel], [Inspector]) and imports neither the gossip layer nor the
// kernel package, so everything in it runs in plain unit tests.
//
// # The host lifecycle
//
// A [Host] owns one machine's state directory (under an exclusive lock)
// with a journal of every patch it knows. One method moves a patch between
// states (applying, applied, reverting, reverted, replaced, failed,
// not_applicable) along fixed edges, and the journal is written atomically
// before and after every kernel action. Opening a Host reconciles the
// journal with the kernel, which is the truth. Apply runs every check
// (verification, target kernel, stack and version rules) before any state
// or kernel change, stores the verified bytes content-addressed in the
// host's one bundle store ([Store], shared with distribution), and loads
// the module from that stored file after re-hashing it through the same
// descriptor. Undo follows Ksplice's stack discipline. A crash-loop marker
// journaled before each load keeps a patch that took the host down from
// being re-applied by Boot. Boot and undo's put-back verify every stored
// bundle again against the host's trust policy ([StoredVerifier]) before
// loading it: a revoked signer refuses it, an expiry since the apply does
// not (see [TrustVerdict]). The state directory, its folders and files
// must be root's or this user's and not writable by others, and are
// opened without following links. docs/host.md tells the whole story.
//
// # The bundle store
//
// A [Store] keeps each bundle once per host: its head (manifest and
// signatures, [EncodeHead]) and its module, content-addressed, written
// through synced "*.unverified" files renamed into place. The host
// lifecycle reads boot re-applies and put-backs from it; the agent's
// distribution (package distrib) fetches into it and serves from it. A
// bundle is held for distribution unless it is kept for this host alone,
// and its bytes go only when the journal no longer needs them. Opening it
// moves the separate copies of earlier releases into it, once and
// crash-safely (migrateLegacy).
//
// # The bundle file (.splice), format 1.0
//
// A bundle is one file: a fixed header, then sections, each a kind byte, a
// big-endian uint32 length and that many bytes:
//
//	magic    8 bytes  0x89 'S' 'P' 'L' 'I' 'C' 'E' '\n'
//	major    uint16   format major version (1); another major is refused
//	minor    uint16   format minor version; newer minors only add optional sections
//	section  kind 1   manifest, exactly once, first (at most MaxManifestSize)
//	section  kind 2   module, exactly once, second (at most MaxModuleSize)
//	section  kind 3   detached OpenPGP signature over the manifest bytes, 0..MaxSignatures
//	                  (each at most MaxSignatureSize)
//	section  kind 0x80..0xfe  optional, skipped by readers that do not know it
//	                  (at most MaxOptionalSize each, MaxOptionalSections in all)
//	section  kind 0   end, length 0; nothing may follow it
//
// The manifest is a JSON document (see [Manifest]) and is the only signed
// part: signatures cover the manifest bytes exactly as stored, and the
// manifest pins the module by SHA-256 digest and size. Adding a signature
// appends a section and never touches the manifest, so signers can sign in
// any order, on different machines, with different tools (gpg included).
//
// # Reading order
//
// Bytes are checked before they are parsed. [Decode] reads only the
// container, with every length checked against its limit before anything is
// allocated, and refuses truncated input, trailing data and unknown
// required sections. [Verify] then checks the signatures over the raw
// manifest bytes, and only after they hold parses the manifest (strictly:
// unknown fields are an error, and so is a key given twice or in two cases,
// which jq and encoding/json would read differently), checks its expiry,
// and checks the module's
// size and digest. The module is handed out for ELF parsing only after
// that. A [*Verified] bundle is a spec: deterministic and independent of the
// host; whether it fits the running kernel is decided when it is applied.
//
// Every refusal is a [*RejectError], distinct from I/O errors: retrying the
// same bytes cannot help.
package splice
