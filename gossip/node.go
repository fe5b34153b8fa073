package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// EventKind says what an Event reports.
type EventKind int

// Event kinds. Serf's reap events (a failed or left member forgotten) are
// not forwarded.
const (
	MemberJoin EventKind = iota + 1
	MemberLeave
	MemberFailed
	MemberUpdate
	Announce
	UserEvent
)

func (k EventKind) String() string {
	switch k {
	case MemberJoin:
		return "member-join"
	case MemberLeave:
		return "member-leave"
	case MemberFailed:
		return "member-failed"
	case MemberUpdate:
		return "member-update"
	case Announce:
		return "announce"
	case UserEvent:
		return "user-event"
	}
	return "event-kind-" + strconv.Itoa(int(k))
}

// Event is one thing the gossip layer observed. Member is set for member
// kinds, Announcement for Announce, Name and Payload for UserEvent. From
// names the member a member event is about; serf user events do not carry
// their sender, so From is empty for them.
type Event struct {
	Kind         EventKind
	Member       *Member
	Announcement *Announcement
	Name         string
	Payload      []byte
	From         string
}

// Member is a snapshot of one cluster member.
type Member struct {
	Name string `json:"name"`
	// Addr is the member's gossip address, host:port.
	Addr string `json:"addr"`
	// Status is "alive", "leaving", "left" or "failed".
	Status string            `json:"status"`
	Tags   map[string]string `json:"tags"`
}

// QueryResponse is one member's answer to a query.
type QueryResponse struct {
	From    string
	Payload []byte
}

// Stats are the node's counters since Start.
type Stats struct {
	// EventsReceived counts events serf handed to the node.
	EventsReceived uint64
	// AnnouncementsReceived counts valid announcements delivered or dropped.
	AnnouncementsReceived uint64
	// BadAnnouncements counts announcements that failed to decode.
	BadAnnouncements uint64
	// UnknownProtocol counts announcements of a protocol version this
	// build does not speak.
	UnknownProtocol uint64
	// OtherUserEvents counts user events with a name other than
	// AnnounceEvent; they are ignored.
	OtherUserEvents uint64
	// EventsDropped counts events lost because the Events channel was full.
	EventsDropped uint64
	// OutsiderMessages counts gossip packets and streams refused because
	// they were not encrypted with a key of the keyring: a host without
	// the gossip key trying to join, or talking to the cluster.
	OutsiderMessages uint64
	// QueriesAnswered, QueryErrors and QueriesDropped count incoming
	// queries answered, refused by their handler (or failing to send),
	// and dropped because too many handlers were running.
	QueriesAnswered uint64
	QueryErrors     uint64
	QueriesDropped  uint64
	// QueueDepth is the number of events waiting in the Events channel.
	QueueDepth int
	// IntentQueue, EventQueue and QueryQueue are serf's broadcast queues:
	// membership intents, user events and queries waiting to be gossiped.
	IntentQueue, EventQueue, QueryQueue int
	// HealthScore is memberlist's awareness of its own health: 0 is
	// healthy, higher means probes of this node are going unanswered.
	HealthScore int
	// Members counts the known members by status.
	Members map[string]int
	// Protocol is the version the node announces in now (Speaks).
	Protocol uint8
}

// maxQueryHandlers bounds concurrently running query handlers.
const maxQueryHandlers = 16

// Node is one member of the gossip cluster.
type Node struct {
	cfg  Config
	log  *slog.Logger
	serf *serf.Serf
	ml   *memberlist.Config

	serfCh   chan serf.Event
	out      chan Event
	pumpDone chan struct{}
	querySem chan struct{}

	mu       sync.RWMutex
	handlers map[string]func([]byte) ([]byte, error)

	// versions counts each member's changes (events, and this node's
	// own tag updates): see EachMember.
	versionsMu sync.Mutex
	versions   map[string]uint64

	shutdownOnce sync.Once
	shutdownErr  error

	eventsReceived, announcements, badAnnouncements, unknownProtocol, outsiders atomic.Uint64
	otherUserEvents, eventsDropped                                              atomic.Uint64
	queriesAnswered, queryErrors, queriesDropped                                atomic.Uint64
}

// Start creates the node, binds its ports and starts gossiping. It does not
// contact anyone; call Join (or rely on SnapshotPath to rejoin).
func Start(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("gossip config: %w", err)
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger,
		serfCh:   make(chan serf.Event, 256),
		out:      make(chan Event, cfg.EventBuffer),
		pumpDone: make(chan struct{}),
		querySem: make(chan struct{}, maxQueryHandlers),
		handlers: map[string]func([]byte) ([]byte, error){},
	}

	t := cfg.Tuning
	ml := memberlist.DefaultLANConfig()
	ml.BindAddr, ml.BindPort = cfg.BindAddr, cfg.BindPort
	ml.AdvertiseAddr, ml.AdvertisePort = cfg.AdvertiseAddr, cfg.AdvertisePort
	ml.GossipInterval, ml.GossipNodes = t.GossipInterval, t.GossipNodes
	ml.ProbeInterval, ml.ProbeTimeout = t.ProbeInterval, t.ProbeTimeout
	ml.PushPullInterval, ml.TCPTimeout = t.PushPullInterval, t.TCPTimeout
	ml.SuspicionMult, ml.RetransmitMult = t.SuspicionMult, t.RetransmitMult
	ml.GossipToTheDeadTime = t.PushPullInterval
	ml.EnableCompression = !t.Uncompressed
	ml.Logger = newStdLogger(n.log, "memberlist", func() { n.outsiders.Add(1) })
	if cfg.Network != nil {
		t, err := cfg.Network.transport()
		if err != nil {
			return nil, err
		}
		ml.Transport = t
		ml.BindAddr, ml.BindPort = t.ip.String(), t.port
		ml.AdvertiseAddr, ml.AdvertisePort = "", 0
	}
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		ml.Keyring = kr
		ml.GossipVerifyIncoming, ml.GossipVerifyOutgoing = true, true
	}

	sc := serf.DefaultConfig()
	sc.NodeName = cfg.NodeName
	sc.Tags = cfg.withProtocolTag(cfg.Tags)
	sc.ProtocolVersion = serfProtocol[cfg.Protocol]
	sc.EventCh = n.serfCh
	sc.MemberlistConfig = ml
	sc.LogOutput = nil
	sc.Logger = newStdLogger(n.log, "serf", nil)
	sc.SnapshotPath = cfg.SnapshotPath
	if t.ReapInterval > 0 {
		sc.ReapInterval = t.ReapInterval
	}
	if t.ReconnectInterval > 0 {
		sc.ReconnectInterval = t.ReconnectInterval
	}
	if t.LeavePropagateDelay > 0 {
		sc.LeavePropagateDelay = t.LeavePropagateDelay
	}
	if t.BroadcastTimeout > 0 {
		sc.BroadcastTimeout = t.BroadcastTimeout
	}
	// Serf's own queries (the keyring operations) take their timeout from
	// GossipInterval * QueryTimeoutMult * ceil(log10(N+1)), which shrinks
	// to nothing with fast gossip. Pick the multiplier so that it equals
	// QueryTimeout in clusters of up to nine nodes (twice that up to 99).
	sc.QueryTimeoutMult = max(1, int((cfg.QueryTimeout+t.GossipInterval-1)/t.GossipInterval))

	s, err := serf.Create(sc)
	if err != nil {
		if t, ok := ml.Transport.(*memTransport); ok {
			_ = t.Shutdown()
		}
		return nil, fmt.Errorf("start serf: %w", err)
	}
	n.serf, n.ml = s, ml
	go n.pump()
	n.log.Info("gossip started", "addr", n.Addr(), "encrypted", s.EncryptionEnabled())
	return n, nil
}

// LocalName returns the node's name.
func (n *Node) LocalName() string { return n.cfg.NodeName }

// Addr returns the host:port the node's gossip listeners are bound to,
// with the port memberlist picked when Config.BindPort was 0.
func (n *Node) Addr() string {
	return net.JoinHostPort(n.ml.BindAddr, strconv.Itoa(n.ml.BindPort))
}

// AdvertisedAddr returns the host:port other members dial to reach this
// node: Config.AdvertiseAddr/Port, or the bound address, or, when bound to
// 0.0.0.0, the address memberlist chose to advertise.
func (n *Node) AdvertisedAddr() string {
	return n.serf.Memberlist().LocalNode().Address()
}

// Join contacts the given members (host:port) until at least one answers,
// retrying with exponential backoff and jitter until ctx ends. It returns
// how many were contacted. Recent user events the peers still buffer are
// delivered to the joiner; announcements are idempotent, so this only
// helps a late joiner catch up.
func (n *Node) Join(ctx context.Context, addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("join: no addresses")
	}
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		joined, err := n.serf.Join(addrs, false)
		if joined > 0 {
			if err != nil {
				n.log.Debug("join: some peers failed", "joined", joined, "err", err)
			}
			return joined, nil
		}
		n.log.Debug("join attempt failed", "attempt", attempt, "err", err)
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("join %s after %d attempts: %w (last error: %v)", strings.Join(addrs, ","), attempt, ctx.Err(), err)
		case <-time.After(wait):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Leave tells the cluster the node is leaving and waits for the message to
// spread (Tuning.LeavePropagateDelay). Call Shutdown afterwards.
func (n *Node) Leave() error {
	if err := n.serf.Leave(); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	return nil
}

// ForceLeave tells the cluster that a failed member left (serf's
// force-leave), so that no member tries to reach it again and it is
// reaped like a member that left. A member that is alive refutes it; the
// caller checks the status first.
func (n *Node) ForceLeave(name string) error {
	if err := n.serf.RemoveFailedNode(name); err != nil {
		return fmt.Errorf("force-leave %s: %w", name, err)
	}
	return nil
}

// Shutdown stops the node without telling the cluster (peers will mark it
// failed unless Leave ran first) and closes the Events channel. It is safe
// to call more than once.
func (n *Node) Shutdown() error {
	n.shutdownOnce.Do(func() {
		if err := n.serf.Shutdown(); err != nil {
			n.shutdownErr = fmt.Errorf("shutdown: %w", err)
		}
		<-n.pumpDone
	})
	return n.shutdownErr
}

// Members returns the members this node knows, sorted by name, including
// itself and those that failed or left and are not yet reaped.
func (n *Node) Members() []Member {
	sm := n.serf.Members()
	out := make([]Member, 0, len(sm))
	for _, m := range sm {
		out = append(out, toMember(m))
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// EachMember calls f for every member this node knows, in no order,
// without copying their tags: f must neither keep nor modify tags (serf
// replaces a member's tags on an update and never changes them in
// place, so reading them in f is safe). It is Members without the
// copies, for callers that look at every member often: at thousands of
// members, Members copies thousands of maps.
//
// version grows with every change of the member this node heard of (a
// join, update, leave or failure event, and this node's own SetTags). A
// caller that converts members once and keeps the result converts a
// member again when its version or status differs from the one it kept.
// The event of a change is handled just after serf lists it: for a moment
// a member may show new tags under its old version, and the next look
// shows the new version; never old tags under a new version.
func (n *Node) EachMember(f func(name, status string, version uint64, tags map[string]string)) {
	// The versions are read before the members: serf lists a change
	// before its event raises the version, so a member read after its
	// version is at worst newer than the version says, never older.
	n.versionsMu.Lock()
	versions := maps.Clone(n.versions)
	n.versionsMu.Unlock()
	for _, m := range n.serf.Members() {
		f(m.Name, m.Status.String(), versions[m.Name], m.Tags)
	}
}

// changed counts a change of member name.
func (n *Node) changed(name string) {
	n.versionsMu.Lock()
	defer n.versionsMu.Unlock()
	if n.versions == nil {
		n.versions = map[string]uint64{}
	}
	n.versions[name]++
}

func toMember(m serf.Member) Member {
	return Member{
		Name:   m.Name,
		Addr:   net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))),
		Status: m.Status.String(),
		Tags:   maps.Clone(m.Tags),
	}
}

// SetTags replaces the node's tags and gossips them. Tags over
// MaxTagsSize are refused with an error wrapping ErrTagsTooLarge.
func (n *Node) SetTags(tags map[string]string) error {
	tags = n.cfg.withProtocolTag(tags)
	if err := CheckTags(tags); err != nil {
		return fmt.Errorf("set tags: %w", err)
	}
	if st := n.serf.State(); st != serf.SerfAlive {
		// After a leave memberlist may have dropped the local node, and
		// re-advertising it would fail on it.
		return fmt.Errorf("set tags: %w (%s)", ErrNotAlive, st)
	}
	err := n.serf.SetTags(tags)
	// The tags are set even when the broadcast timed out.
	n.changed(n.cfg.NodeName)
	if err != nil {
		return fmt.Errorf("set tags: %w", err)
	}
	return nil
}

// Announce gossips a as a user event. Delivery is best effort: serf
// retransmits a bounded number of times and buffers a bounded number of
// recent events, so callers need anti-entropy for what must arrive. The
// announcing node receives its own announcement on Events as well.
//
// The announcement goes out in the newest protocol version that this node
// speaks and every alive member decodes (a.Protocol is ignored).
func (n *Node) Announce(a Announcement) error {
	a.Protocol = n.Speaks()
	payload, err := EncodeAnnouncement(a)
	if err != nil {
		return err
	}
	return n.userEvent(AnnounceEvent, payload)
}

// Speaks returns the protocol version the node announces in now:
// Config.Protocol, or older while an alive member decodes only older.
func (n *Node) Speaks() uint8 {
	v := n.cfg.Protocol
	for _, m := range n.serf.Members() {
		if m.Status == serf.StatusAlive {
			v = min(v, decodesUpTo(m.Tags))
		}
	}
	return max(v, ProtocolMin)
}

// Broadcast gossips a user event named in Config.UserEvents, best
// effort like Announce; the sender receives it too.
func (n *Node) Broadcast(name string, payload []byte) error {
	if !slices.Contains(n.cfg.UserEvents, name) {
		return fmt.Errorf("user event %s: not in Config.UserEvents", name)
	}
	return n.userEvent(name, payload)
}

func (n *Node) userEvent(name string, payload []byte) error {
	if err := n.serf.UserEvent(name, payload, false); err != nil {
		return fmt.Errorf("user event %s: %w", name, err)
	}
	return nil
}

// Events returns the channel of member events and announcements. It is
// buffered (Config.EventBuffer); when it is full, new events are dropped
// and counted in Stats.EventsDropped, so a slow reader never stalls serf.
// It is closed by Shutdown.
func (n *Node) Events() <-chan Event { return n.out }

// pump turns serf events into the package's own and never blocks on the
// consumer.
func (n *Node) pump() {
	defer close(n.pumpDone)
	defer close(n.out)
	for {
		select {
		case e := <-n.serfCh:
			n.handle(e)
		case <-n.serf.ShutdownCh():
			return
		}
	}
}

func (n *Node) handle(e serf.Event) {
	n.eventsReceived.Add(1)
	switch e := e.(type) {
	case serf.MemberEvent:
		for _, sm := range e.Members {
			n.changed(sm.Name)
		}
		var kind EventKind
		switch e.Type {
		case serf.EventMemberJoin:
			kind = MemberJoin
		case serf.EventMemberLeave:
			kind = MemberLeave
		case serf.EventMemberFailed:
			kind = MemberFailed
		case serf.EventMemberUpdate:
			kind = MemberUpdate
		default:
			return
		}
		for _, sm := range e.Members {
			m := toMember(sm)
			n.emit(Event{Kind: kind, Member: &m, From: m.Name})
		}
	case serf.UserEvent:
		if e.Name != AnnounceEvent {
			if !slices.Contains(n.cfg.UserEvents, e.Name) {
				n.otherUserEvents.Add(1)
				return
			}
			n.emit(Event{Kind: UserEvent, Name: e.Name, Payload: e.Payload})
			return
		}
		a, err := decodeAnnouncement(e.Payload, n.cfg.Decodes)
		switch {
		case errors.Is(err, ErrUnknownProtocol):
			n.unknownProtocol.Add(1)
			n.log.Debug("ignored announcement", "err", err)
			return
		case err != nil:
			n.badAnnouncements.Add(1)
			n.log.Warn("bad announcement", "err", err)
			return
		}
		n.announcements.Add(1)
		n.emit(Event{Kind: Announce, Announcement: &a})
	case *serf.Query:
		n.dispatchQuery(e)
	}
}

func (n *Node) emit(ev Event) {
	select {
	case n.out <- ev:
	default:
		n.eventsDropped.Add(1)
	}
}

// HandleQuery registers h to answer queries called name; a nil h removes
// the handler. A handler runs in its own goroutine (at most 16 at once;
// queries beyond that are dropped and counted) and gets a copy of the
// payload. An error means "no answer". An answer must fit serf's response
// limit (1024 bytes, encoding included) or it is not sent.
func (n *Node) HandleQuery(name string, h func(payload []byte) ([]byte, error)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h == nil {
		delete(n.handlers, name)
		return
	}
	n.handlers[name] = h
}

func (n *Node) dispatchQuery(q *serf.Query) {
	n.mu.RLock()
	h := n.handlers[q.Name]
	n.mu.RUnlock()
	if h == nil {
		return
	}
	select {
	case n.querySem <- struct{}{}:
	default:
		n.queriesDropped.Add(1)
		return
	}
	payload := slices.Clone(q.Payload)
	go func() {
		defer func() { <-n.querySem }()
		resp, err := runHandler(h, payload)
		if err == nil {
			err = q.Respond(resp)
		}
		if err != nil {
			n.queryErrors.Add(1)
			n.log.Debug("query not answered", "query", q.Name, "from", q.SourceNode(), "err", err)
			return
		}
		n.queriesAnswered.Add(1)
	}()
}

func runHandler(h func([]byte) ([]byte, error), payload []byte) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("query handler panicked: %v", r)
		}
	}()
	return h(payload)
}

// Query asks every member (this node included) and collects answers until
// timeout (Config.QueryTimeout when timeout is 0) has passed, even when
// everyone answered earlier, since serf does not know how many answers to
// expect. If ctx ends first, it returns the answers so far with ctx's
// error. Answers are sorted by member name.
func (n *Node) Query(ctx context.Context, name string, payload []byte, timeout time.Duration) ([]QueryResponse, error) {
	if strings.HasPrefix(name, serf.InternalQueryPrefix) {
		return nil, fmt.Errorf("query %s: names starting with %q are serf's", name, serf.InternalQueryPrefix)
	}
	if timeout <= 0 {
		timeout = n.cfg.QueryTimeout
	}
	qr, err := n.serf.Query(name, payload, &serf.QueryParam{Timeout: timeout})
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", name, err)
	}
	var out []QueryResponse
	sorted := func() []QueryResponse {
		slices.SortFunc(out, func(a, b QueryResponse) int { return strings.Compare(a.From, b.From) })
		return out
	}
	for {
		select {
		case r, ok := <-qr.ResponseCh():
			if !ok {
				return sorted(), nil
			}
			out = append(out, QueryResponse{From: r.From, Payload: r.Payload})
		case <-ctx.Done():
			qr.Close()
			return sorted(), fmt.Errorf("query %s: %w", name, ctx.Err())
		}
	}
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	st := Stats{
		EventsReceived:        n.eventsReceived.Load(),
		OutsiderMessages:      n.outsiders.Load(),
		AnnouncementsReceived: n.announcements.Load(),
		BadAnnouncements:      n.badAnnouncements.Load(),
		UnknownProtocol:       n.unknownProtocol.Load(),
		OtherUserEvents:       n.otherUserEvents.Load(),
		EventsDropped:         n.eventsDropped.Load(),
		QueriesAnswered:       n.queriesAnswered.Load(),
		QueryErrors:           n.queryErrors.Load(),
		QueriesDropped:        n.queriesDropped.Load(),
		QueueDepth:            len(n.out),
		Members:               map[string]int{},
	}
	st.Protocol = n.cfg.Protocol
	for _, m := range n.serf.Members() {
		st.Members[m.Status.String()]++
		if m.Status == serf.StatusAlive {
			st.Protocol = min(st.Protocol, decodesUpTo(m.Tags))
		}
	}
	ss := n.serf.Stats()
	for key, v := range map[string]*int{"intent_queue": &st.IntentQueue, "event_queue": &st.EventQueue,
		"query_queue": &st.QueryQueue, "health_score": &st.HealthScore} {
		*v, _ = strconv.Atoi(ss[key])
	}
	return st
}
