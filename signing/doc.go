// Package signing holds splicefleet's OpenPGP keys, detached signatures and
// the trust policy that decides whether a signed message may change a kernel.
//
// # Trust model
//
// Nothing that changes a kernel is trusted because of where it came from:
// bundles arrive over gossip from any member of the cluster, and the gossip
// key only keeps outsiders out. What is trusted is a set of OpenPGP public
// keys the operator installs on every host (a keyring file) and a threshold
// K. A message (a bundle's manifest bytes, exactly as stored) is accepted
// when at least K distinct trusted primary keys made a valid detached
// signature over it.
//
// A signature counts toward K only when every check passes, in this order:
//
//  1. it is a well-formed OpenPGP v4 or v6 signature packet of type
//     "binary document", within [MaxSignatureSize], with nothing after it;
//  2. its hash is strong (SHA-2 or SHA-3; MD5, SHA-1 and RIPEMD-160 are
//     refused);
//  3. its issuer is a key in the trusted keyring, with signing capability
//     (the issuer its hashed subpackets name: an issuer or issuer
//     fingerprint in the unhashed area, which anyone can rewrite, is used
//     only where the hashed area names none);
//  4. the signature verifies over the message;
//  5. it was not made in the future (beyond [Policy.MaxClockSkew]) and has
//     not expired;
//  6. the signing key (or subkey), its primary key and the primary identity
//     are not revoked, and neither the key nor its subkey has expired.
//
// A signature by a subkey counts as its primary key, and several signatures
// by one primary key count once. Counting is by key material, not by
// fingerprint: the same secret under two primary keys (a new creation time
// makes a new fingerprint) counts once, whether it signs as a primary key or
// as a subkey. Signatures that fail a check are ignored
// for counting (an attacker can always append junk to a file), but when the
// threshold is not met the error lists every signature that did not count
// and why. Time comes from the policy's injected clock, never from the
// signature. [Policy.VerifyAsOf] judges a message a host already acted on
// (a stored bundle loaded again at boot): expiry as of the time it was
// verified, revocation as of now, so a fix is not dropped because time
// passed but is when a signer's key was revoked.
//
// Keys are read from armored or binary keyrings as GnuPG exports them.
// Several copies of one key (an old export and a re-export appended after
// it) are merged as gpg merges them on import: any revocation in any copy
// wins, and the newest self-signature decides expiry. A keyring in which two
// different keys share key material is refused, naming both fingerprints.
// Ed25519 keys (EdDSA, algorithm 22, and RFC 9580's algorithm 27), Ed448,
// ECDSA and RSA of at least 2048 bits are accepted; DSA, ElGamal-signing
// and short RSA keys are refused when the keyring is read, so a weak key
// never becomes trusted. New keys are generated as v4 EdDSA (algorithm 22)
// Ed25519 keys because GnuPG 2.2, which most fleets run, reads those and not
// the newer formats.
//
// A failed check is a [*VerificationError]: the input is bad and retrying it
// cannot help, so callers alert and count instead of retrying. Everything
// else (a keyring that cannot be parsed, a threshold that cannot be met) is
// a configuration error. The package takes bytes, never paths: callers read
// files with their own size limits.
package signing
