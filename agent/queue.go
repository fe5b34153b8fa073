package agent

import (
	"context"
	"slices"
	"sync"
)

// Budgets of the background fetches (bundles and documents). Gossip
// events carry no sender, so a fetch is charged to the member whose
// advertised blob service it was learned from: the origin an
// announcement names, or the peer whose index anti-entropy read. An
// announcement whose origin no member advertises is dropped before any
// request. Two pools keep the fetches apart: those announced over
// gossip, which any member can cause, and those pulled by anti-entropy
// from a peer this agent picked; the first can never crowd out the
// second.
const (
	// maxFetchesQueued bounds each pool of each kind: fetches queued or
	// running at once. Beyond it announcements are dropped (anti-entropy
	// brings what is real), so a flood cannot pile up goroutines.
	maxFetchesQueued = 128
	// maxAnnouncedPerMember bounds the announced fetches charged to one
	// member: a member flooding announcements whose origin trickles gets
	// this many, not the whole pool.
	maxAnnouncedPerMember = 16
	// maxPulledPerMember bounds the pulled fetches charged to one peer:
	// a late joiner catches up on many documents from one good peer,
	// and a rogue peer picked by chance takes half the pool at most.
	maxPulledPerMember = maxFetchesQueued / 2
	// maxRunningPerMember bounds the bundle downloads charged to one
	// member that run at once, of the agent's fetchSlots.
	maxRunningPerMember = 2
	// fetchSlots is how many bundle downloads run at once.
	fetchSlots = 4
	// maxSourcesPerFetch bounds the origins recorded for one queued
	// document (one per announcement of the same digest).
	maxSourcesPerFetch = 8
)

// Why a fetch was not queued, as the metric labels it.
const (
	dropQueueFull    = "queue_full"    // its pool is full
	dropMemberBudget = "member_budget" // its member used its budget
	dropNotAMember   = "not_a_member"  // no member advertises its origin
)

var dropReasons = []string{dropQueueFull, dropMemberBudget, dropNotAMember}

// fetchQueue admits the background fetches of one kind.
type fetchQueue struct {
	mu      sync.Mutex
	entries map[string]*queued // by digest
	pool    [2]int             // admitted: announced, pulled
	charged map[charge]int
	run     map[string]chan struct{} // per member, maxRunningPerMember
	dropped map[string]uint64        // by reason
}

type charge struct {
	member string
	pulled bool
}

// queued is one admitted fetch.
type queued struct {
	member  string
	pulled  bool
	sources []string // where it was announced or listed, first first
}

func newFetchQueue() *fetchQueue {
	return &fetchQueue{entries: map[string]*queued{}, charged: map[charge]int{}, run: map[string]chan struct{}{}, dropped: map[string]uint64{}}
}

func poolOf(pulled bool) int {
	if pulled {
		return 1
	}
	return 0
}

// admit queues a fetch of digest learned from member at source. It
// returns false when the digest is queued already (source is then added
// to it, so the fetch tries it as well) or when the fetch was dropped
// (counted, with the reason returned).
func (q *fetchQueue) admit(digest, member, source string, pulled bool) (ok bool, reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if e, ok := q.entries[digest]; ok {
		if !slices.Contains(e.sources, source) && len(e.sources) < maxSourcesPerFetch {
			e.sources = append(e.sources, source)
		}
		return false, ""
	}
	limit := maxAnnouncedPerMember
	if pulled {
		limit = maxPulledPerMember
	}
	switch c := (charge{member, pulled}); {
	case q.pool[poolOf(pulled)] >= maxFetchesQueued:
		reason = dropQueueFull
	case q.charged[c] >= limit:
		reason = dropMemberBudget
	default:
		q.entries[digest] = &queued{member: member, pulled: pulled, sources: []string{source}}
		q.pool[poolOf(pulled)]++
		q.charged[c]++
		return true, ""
	}
	q.dropped[reason]++
	return false, reason
}

// drop counts a fetch refused before admit.
func (q *fetchQueue) drop(reason string) {
	q.mu.Lock()
	q.dropped[reason]++
	q.mu.Unlock()
}

// done ends an admitted fetch.
func (q *fetchQueue) done(digest string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.entries[digest]
	if !ok {
		return
	}
	delete(q.entries, digest)
	q.pool[poolOf(e.pulled)]--
	c := charge{e.member, e.pulled}
	if q.charged[c]--; q.charged[c] <= 0 {
		delete(q.charged, c)
		if q.charged[charge{e.member, !e.pulled}] == 0 {
			delete(q.run, e.member) // nobody holds or waits for it
		}
	}
}

// sources lists where an admitted fetch was announced, so far.
func (q *fetchQueue) sources(digest string) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if e, ok := q.entries[digest]; ok {
		return slices.Clone(e.sources)
	}
	return nil
}

// runSlot waits for one of the member's running slots (an admitted
// fetch's member always has its channel until done).
func (q *fetchQueue) runSlot(ctx context.Context, member string) (release func(), ok bool) {
	q.mu.Lock()
	ch := q.run[member]
	if ch == nil {
		ch = make(chan struct{}, maxRunningPerMember)
		q.run[member] = ch
	}
	q.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, true
	case <-ctx.Done():
		return nil, false
	}
}

// counts returns the fetches admitted, announced and pulled.
func (q *fetchQueue) counts() (announced, pulled int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pool[0], q.pool[1]
}

// drops returns the fetches dropped so far, by reason.
func (q *fetchQueue) drops() map[string]uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make(map[string]uint64, len(dropReasons))
	for _, r := range dropReasons {
		out[r] = q.dropped[r]
	}
	return out
}
