// Package gossip is splicefleet's thin adapter over hashicorp/serf: it
// forms the fleet's encrypted, serverless cluster, carries small bundle
// announcements, answers fleet-wide queries and rotates the gossip keys.
//
// Nothing above this package sees serf's types. A single pump goroutine
// reads serf's event channel and turns member events and "sf-announce" user
// events into Event values on a bounded channel (Node.Events). The pump
// never waits for the reader: when the channel is full it drops the event
// and counts it in Stats, because serf stalls its own state updates when
// its channel blocks. Incoming queries go to handlers registered with
// HandleQuery, each in its own goroutine with a bound on how many run.
//
// Announcements have a compact, canonical binary encoding (see
// EncodeAnnouncement) that stays well under serf's 512-byte user event
// limit. Their first byte is a protocol version; this build decodes
// versions ProtocolMin to ProtocolMax and ignores, counting them, any
// others. Every node advertises the versions it decodes in a tag
// (TagProtocol) and announces in the newest version that it speaks
// (Config.Protocol) and that every alive member decodes, and each
// splicefleet version runs over a fixed serf protocol version, so a fleet
// can run two builds side by side while it upgrades. Gossip is not
// reliable: serf retransmits a bounded number of times and buffers a
// bounded number of recent events, so the agent pairs announcements with
// anti-entropy (queries and SnapshotPath). Gossip encryption keeps
// outsiders out, but every member holds the shared key and can forge an
// announcement: receivers verify bundles by signature, never by origin.
//
// Encryption is on unless Config.UnsafeNoEncryption says otherwise; a node
// without a key in the cluster's keyring cannot join. Keys rotate with
// serf's keyring queries: InstallKey, UseKey, then RemoveKey.
//
// Timers come from Tuning: DefaultTuning for real networks, FastTuning for
// loopback tests. Query timeouts are always explicit (Config.QueryTimeout or
// the Query argument), since serf's derived timeout shrinks with fast
// gossip.
package gossip
