// Package rollout decides, on every host by itself, when a signed rollout
// plan takes a bundle onto that host, and when it stops.
//
// There is no controller. A [Plan] names a bundle by digest, the hosts it
// targets, a list of stages (rings first, then nested percentages) and the
// gates between them, and is signed like a bundle. Every agent holds the
// same plan, sees the same gossip state (each member's tags carry its
// report for the rollouts it took part in, see [EncodeReports]) and runs
// the same pure function over it ([Rollout.Evaluate]), so every agent
// reaches the same decision without talking to a leader:
//
//   - A host's bucket is a stable hash of the plan ID and the node name,
//     0..9999 ([Bucket]). A percentage stage selects the hosts whose bucket
//     is below its share, so stages nest: a host in 1% is in 10%. Hosts
//     whose "ring" tag names a ring stage are in that stage and every later
//     one. A host that runs the simulated kernel (a test double,
//     [Member.Simulated]) is targeted only by a plan that sets
//     allow_simulated.
//   - Stage 0 opens when the plan is accepted. Stage k+1 opens when stage
//     k passed its gate (enough of its cohort reported healthy, nothing
//     tripped) and has soaked for its soak time since this agent first
//     saw it pass, or when a signed promote command opened it. Soak is
//     measured on the local monotonic clock from a locally observed
//     event, so skew between hosts' clocks does not move stages; clocks
//     only matter for the plan's expiry and the signatures' creation
//     times, where the trust policy tolerates [signing.Policy]'s skew (5
//     minutes by default).
//   - Missing data is not success: a host that has not reported is not
//     healthy, and the stage waits and says for whom. A stage opens only
//     on evidence: its predecessor's gate is checked again when the soak
//     ends (a pass that stopped holding restarts the soak), and an empty
//     or shrunken cohort proves nothing. Each agent records the hosts it
//     saw in the open stages' cohorts ([Rollout.Seen]); one that a later
//     view does not list at all (a restarted agent whose member list
//     holds only itself until serf rejoins) still counts, as waiting "not
//     seen since restart", while one seen leaving gracefully drops out.
//     A view the agent marks [View.Joining] (not joined since it
//     started) opens nothing and applies nothing. A cohort that is
//     empty on a complete view (no host carries the ring) passes, as
//     the plan says.
//   - Failures halt. A failure is a member whose tag reports it failed, or
//     a failure report heard over gossip (fast, unsigned). Unsigned input
//     can only make an agent more careful: a report can halt a rollout,
//     nothing unsigned opens a stage or applies a patch. A halt is sticky.
//   - Operators steer with signed [Command]s carrying a sequence number.
//     A sequence number is used once: a replayed or conflicting command is
//     refused. The state is a fold of the accepted commands in sequence
//     order, so commands that arrive out of order end where they would have
//     in order. Halt and revoke are final. [CheckCommand] refuses, before
//     a command is signed and wherever it arrives, the ones the end of a
//     rollout leaves without effect (halt of a done rollout, resume of a
//     halted one). A forget command names a bundle, not a rollout: it
//     drops the copies agents hold for distribution.
//
// Plans and commands travel as [Document]s: the exact bytes that were
// signed and their detached OpenPGP signatures, verified before they are
// parsed. Parsing refuses a key that two readers would read differently
// (the same key twice, or two keys that differ only in case: encoding/json
// matches fields ignoring case and keeps the last, jq does not), so what
// operators reviewed is what agents act on ([ErrDuplicateKey]).
package rollout
