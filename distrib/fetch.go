package distrib

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/splicefleet/splicefleet/splice"
)

// Errors of a fetch that are not refusals of the bundle itself.
var (
	// ErrUnavailable: no source served good bytes within the retries.
	ErrUnavailable = errors.New("bundle unavailable")
	// ErrBadPeer: a source served bytes that are not what was asked for
	// (wrong digest, too large, malformed). It is skipped for the rest of
	// the fetch and counted.
	ErrBadPeer = errors.New("bad peer response")
)

// Defaults for FetcherOptions.
const (
	DefaultFetchRetries = 2
	DefaultFetchBackoff = 250 * time.Millisecond
	DefaultNegativeTTL  = 10 * time.Minute
	maxFetchBackoff     = 30 * time.Second
	MaxErrorBody        = 4 << 10
	maxNegativeEntries  = 4096 // refused digests remembered at once

	// DefaultHeadTimeout bounds one head request: a head is at most
	// splice.MaxHeadSize bytes, so a source slower than that is not worth
	// waiting for.
	DefaultHeadTimeout = 5 * time.Second
	// DefaultModuleStall plus the module's size at DefaultMinFetchRate
	// bounds one module request.
	DefaultModuleStall  = 10 * time.Second
	DefaultMinFetchRate = MinUploadRate
	// DefaultFetchTimeout bounds the head phase of one fetch, all
	// sources and rounds together, and, plus one module request's
	// bound, its module phase.
	DefaultFetchTimeout = 2 * time.Minute
	// DefaultDemoteFor is how long a source that timed out or could not
	// be reached is tried after every other source.
	DefaultDemoteFor = time.Minute
	// maxAttempts is how often one fetch asks one source that answered
	// but did not serve (404, 5xx); a busy source (429) may be asked
	// every round, and one that timed out or could not be reached is not
	// asked again in that fetch.
	maxAttempts    = 3
	maxDemotedKept = 1024
)

// FetcherOptions configures NewFetcher.
type FetcherOptions struct {
	Store    *splice.Store   // required: where verified bundles go
	Verifier splice.Verifier // required: the trust policy
	// Now is the clock for manifest expiry and the negative cache.
	// Default time.Now.
	Now func() time.Time
	// Client makes the requests. Default: DefaultFetchClient().
	Client *http.Client
	// Retries is how many more rounds over all sources follow a first
	// round that found nothing; negative means none. Default
	// DefaultFetchRetries.
	Retries int
	// Backoff is the pause before the second round; it doubles each round
	// (at most 30s). Default DefaultFetchBackoff.
	Backoff time.Duration
	// NegativeTTL is how long a bundle refused on verification is
	// remembered and refused again without any network I/O. Default
	// DefaultNegativeTTL.
	NegativeTTL time.Duration
	// MaxBackoff caps the wait between rounds (default 30 s).
	MaxBackoff time.Duration
	// Self is this agent's own blob service (host:port), sent with module
	// requests so that a seeding server can point later fetchers here.
	Self   string
	Logger *slog.Logger // default: none
	// OnFetch, when set, hears of every download this Fetcher made (not
	// of bundles found in the store): how long it took and its error.
	OnFetch func(d time.Duration, err error)
	// Member, when set, says whether addr (an origin or a referral's
	// hint) is the advertised blob service of a current member. Any
	// other address is never contacted, so gossip cannot aim the fleet
	// at a host that is not one of its own. The peers passed to Fetch
	// are the caller's own list of members and are not checked again.
	// Nil allows every address (tests and tools that name their sources
	// themselves).
	Member func(addr string) bool
	// HeadTimeout bounds one head request (default DefaultHeadTimeout).
	HeadTimeout time.Duration
	// ModuleStall and MinRate bound one module request to ModuleStall
	// plus the module's size at MinRate bytes a second (defaults
	// DefaultModuleStall, DefaultMinFetchRate).
	ModuleStall time.Duration
	MinRate     int64
	// FetchTimeout bounds a fetch's head phase, every source and round
	// together; its module phase gets FetchTimeout plus one module
	// request's bound (default DefaultFetchTimeout).
	FetchTimeout time.Duration
	// DemoteFor is how long a source that timed out or could not be
	// reached is tried after all others, by every fetch (default
	// DefaultDemoteFor).
	DemoteFor time.Duration
}

// DefaultFetchClient is the HTTP client a Fetcher uses by default: bounded
// connection and header waits, and an overall bound on one request.
func DefaultFetchClient() *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Want names the bundle to fetch, as an announcement gives it.
type Want struct {
	ManifestDigest string
	// Size is the announced total size, a hint only: the signed manifest
	// decides how many module bytes are read.
	Size int64
	// Store, when set, stores the verified bundle: it is given the store
	// write and decides, atomically with what else it guards, whether to
	// make it. Anti-entropy uses it so that a bundle dropped here while
	// its fetch ran is not stored back.
	Store func(put func() error) error
}

// FetcherStats counts what a Fetcher did.
type FetcherStats struct {
	HeadsFetched           uint64
	ModulesFetched         uint64
	BytesFetchedFromPeers  uint64
	BytesFetchedFromOrigin uint64
	BadPeerResponses       uint64
	NegativeCacheHits      uint64
	// SourcesDemoted counts sources that timed out or could not be
	// reached: not asked again in that fetch, and asked last by the
	// fetches of the next DemoteFor.
	SourcesDemoted uint64
	// SourcesRefused counts origins and referral hints left out because
	// no member advertises them.
	SourcesRefused uint64
	// VerificationFailures by splice.Reason label ("signature", ...).
	VerificationFailures map[string]uint64
}

// Fetcher downloads bundles from peers and an origin, verifying as it goes:
// the head (manifest and signatures) first, checked against the wanted
// digest and the trust policy; only then the module, read at most to the
// size the signed manifest states, into a "*.unverified" file renamed once
// its digest matches. A bundle refused on verification is remembered for
// NegativeTTL and refused again without any request. Fetches of one digest
// at once share one download (and its outcome, cancellation included).
type Fetcher struct {
	store    *splice.Store
	verifier splice.Verifier
	now      func() time.Time
	client   *http.Client
	retries  int
	backoff  time.Duration
	ttl      time.Duration
	maxWait  time.Duration
	self     string
	log      *slog.Logger
	shuffle  func([]string) // tests fix the order
	onFetch  func(time.Duration, error)
	member   func(string) bool

	headTimeout, stall, total, demoteFor time.Duration
	minRate                              int64

	mu       sync.Mutex
	negative map[string]negativeEntry
	inflight map[string]*fetchCall
	failures map[string]uint64
	demoted  map[string]time.Time // source base -> until when it is asked last

	stats struct {
		heads, modules, peerBytes, originBytes, badPeer, negHits, demoted, refused atomic.Uint64
	}
}

type negativeEntry struct {
	until time.Time
	err   error // the *splice.RejectError
}

type fetchCall struct {
	done chan struct{}
	v    *splice.Verified
	err  error
}

// NewFetcher makes a Fetcher. Store and Verifier are required.
func NewFetcher(opts FetcherOptions) (*Fetcher, error) {
	if opts.Store == nil || opts.Verifier == nil {
		return nil, errors.New("new fetcher: a store and a verifier are required")
	}
	f := &Fetcher{
		store: opts.Store, verifier: opts.Verifier, now: opts.Now, client: opts.Client,
		retries: opts.Retries, backoff: opts.Backoff, ttl: opts.NegativeTTL, log: opts.Logger, self: opts.Self, maxWait: opts.MaxBackoff,
		onFetch: opts.OnFetch, member: opts.Member,
		headTimeout: cmp.Or(opts.HeadTimeout, DefaultHeadTimeout), stall: cmp.Or(opts.ModuleStall, DefaultModuleStall),
		minRate: cmp.Or(opts.MinRate, DefaultMinFetchRate), total: cmp.Or(opts.FetchTimeout, DefaultFetchTimeout),
		demoteFor: cmp.Or(opts.DemoteFor, DefaultDemoteFor),
		shuffle:   func(s []string) { rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] }) },
		negative:  map[string]negativeEntry{}, inflight: map[string]*fetchCall{}, failures: map[string]uint64{},
		demoted: map[string]time.Time{},
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.client == nil {
		f.client = DefaultFetchClient()
	}
	switch {
	case f.retries == 0:
		f.retries = DefaultFetchRetries
	case f.retries < 0:
		f.retries = 0
	}
	if f.backoff <= 0 {
		f.backoff = DefaultFetchBackoff
	}
	if f.ttl <= 0 {
		f.ttl = DefaultNegativeTTL
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.maxWait <= 0 {
		f.maxWait = maxFetchBackoff
	}
	return f, nil
}

// Stats returns the counters so far.
func (f *Fetcher) Stats() FetcherStats {
	f.mu.Lock()
	failures := maps.Clone(f.failures)
	f.mu.Unlock()
	return FetcherStats{
		HeadsFetched:           f.stats.heads.Load(),
		ModulesFetched:         f.stats.modules.Load(),
		BytesFetchedFromPeers:  f.stats.peerBytes.Load(),
		BytesFetchedFromOrigin: f.stats.originBytes.Load(),
		BadPeerResponses:       f.stats.badPeer.Load(),
		NegativeCacheHits:      f.stats.negHits.Load(),
		SourcesDemoted:         f.stats.demoted.Load(),
		SourcesRefused:         f.stats.refused.Load(),
		VerificationFailures:   failures,
	}
}

// Fetch returns the verified bundle want names: from the store when held,
// otherwise downloaded from peers ("host:port" or a base URL) and origin,
// and stored: the head from the origin first, the module from a few peers
// in random order first and the origin last; sources demoted lately
// (timed out, unreachable) after all others, and addresses no member
// advertises (see FetcherOptions.Member) never. A refusal of the bundle is an error
// wrapping a *splice.RejectError; no source having it is ErrUnavailable.
func (f *Fetcher) Fetch(ctx context.Context, want Want, peers []string, origin string) (*splice.Verified, error) {
	digest := want.ManifestDigest
	if err := splice.CheckDigest(digest); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if want.Size < 0 || want.Size > splice.MaxBundleSize {
		return nil, fmt.Errorf("fetch %s: announced size %d is out of range", digest, want.Size)
	}
	if err := f.remembered(digest); err != nil {
		return nil, err
	}
	if f.store.Has(digest) {
		return f.fromStore(digest)
	}

	f.mu.Lock()
	if c, ok := f.inflight[digest]; ok {
		f.mu.Unlock()
		select {
		case <-c.done:
			return c.v, c.err
		case <-ctx.Done():
			return nil, fmt.Errorf("fetch %s: %w", digest, ctx.Err())
		}
	}
	c := &fetchCall{done: make(chan struct{})}
	f.inflight[digest] = c
	f.mu.Unlock()

	if f.store.Has(digest) { // stored by a fetch that just finished
		c.v, c.err = f.fromStore(digest)
	} else {
		start := time.Now()
		c.v, c.err = f.fetch(ctx, want, peers, origin)
		if f.onFetch != nil {
			f.onFetch(time.Since(start), c.err)
		}
	}
	f.mu.Lock()
	delete(f.inflight, digest)
	f.mu.Unlock()
	close(c.done)
	return c.v, c.err
}

// remembered returns the remembered refusal of digest, if still current.
func (f *Fetcher) remembered(digest string) error {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.negative[digest]
	if !ok {
		return nil
	}
	if !now.Before(e.until) {
		delete(f.negative, digest)
		return nil
	}
	f.stats.negHits.Add(1)
	return fmt.Errorf("fetch %s: refused earlier, not retried until %s: %w", digest, e.until.UTC().Format(time.RFC3339), e.err)
}

// refuse counts and remembers a verification failure.
func (f *Fetcher) refuse(digest string, err error) error {
	reason := splice.Reason(err)
	now := f.now()
	f.mu.Lock()
	f.failures[reason]++
	f.negative[digest] = negativeEntry{until: now.Add(f.ttl), err: err}
	if len(f.negative) > maxNegativeEntries {
		// Bogus announcements must not grow the cache without bound:
		// drop what has expired, then what expires soonest.
		soonest := ""
		for d, e := range f.negative {
			if !now.Before(e.until) {
				delete(f.negative, d)
			} else if soonest == "" || e.until.Before(f.negative[soonest].until) {
				soonest = d
			}
		}
		if len(f.negative) > maxNegativeEntries {
			delete(f.negative, soonest)
		}
	}
	f.mu.Unlock()
	f.log.Warn("bundle refused", "digest", digest, "reason", reason, "err", err)
	return fmt.Errorf("fetch %s: %w", digest, err)
}

func (f *Fetcher) fromStore(digest string) (*splice.Verified, error) {
	b, err := f.store.Bundle(digest)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", digest, err)
	}
	v, err := splice.Verify(b, f.verifier, f.now())
	if err != nil {
		return nil, fmt.Errorf("fetch %s: stored bundle: %w", digest, err)
	}
	return v, nil
}

// source is one place to fetch from.
type source struct {
	base   string // URL without trailing slash
	origin bool
}

func sourceFor(addr string, origin bool) source {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return source{base: strings.TrimSuffix(base, "/"), origin: origin}
}

// allowed says whether addr may be contacted: it is a member's blob
// service (or no membership check is configured). A refusal is counted.
func (f *Fetcher) allowed(addr string) bool {
	if f.member == nil || f.member(addr) {
		return true
	}
	f.stats.refused.Add(1)
	return false
}

// Demoted says whether the peer at addr timed out or was unreachable
// lately, for the agent's own fetches from peers (documents).
func (f *Fetcher) Demoted(addr string) bool { return f.isDemoted(sourceFor(addr, false)) }

// Demote makes every fetch of the next demoteFor ask the peer at addr
// after all others.
func (f *Fetcher) Demote(addr string) { f.demote(sourceFor(addr, false)) }

// Client is the one HTTP client for peers: the agent's other requests to
// peers (documents, reports, indexes) go through it too.
func (f *Fetcher) Client() *http.Client { return f.client }

// isDemoted says whether the source timed out or was unreachable lately.
func (f *Fetcher) isDemoted(s source) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	until, ok := f.demoted[s.base]
	if ok && !time.Now().Before(until) {
		delete(f.demoted, s.base)
		return false
	}
	return ok
}

// demote makes every fetch of the next demoteFor ask s after all others.
func (f *Fetcher) demote(s source) {
	f.stats.demoted.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.demoted) >= maxDemotedKept {
		now := time.Now()
		maps.DeleteFunc(f.demoted, func(_ string, until time.Time) bool { return !now.Before(until) })
		if len(f.demoted) >= maxDemotedKept {
			clear(f.demoted)
		}
	}
	f.demoted[s.base] = time.Now().Add(f.demoteFor)
}

// sources orders the places to fetch from: the peers shuffled, without
// duplicates, then the origin (also when it is listed among the peers);
// sources demoted lately come after all others. An origin that is not a
// member's blob service is left out (the peers are the caller's list of
// members).
func (f *Fetcher) sources(peers []string, origin string) []source {
	order := append([]string(nil), peers...)
	f.shuffle(order)
	var sources []source
	seen := map[string]bool{}
	var last []source
	if origin != "" && f.allowed(origin) {
		o := sourceFor(origin, true)
		seen[o.base] = true
		last = append(last, o)
	}
	for _, p := range order {
		s := sourceFor(p, false)
		if p != "" && !seen[s.base] {
			seen[s.base] = true
			sources = append(sources, s)
		}
	}
	return f.demotedLast(append(sources, last...))
}

// demotedLast moves the sources demoted lately to the end, keeping the
// order otherwise.
func (f *Fetcher) demotedLast(sources []source) []source {
	out := slices.Clone(sources)
	slices.SortStableFunc(out, func(a, b source) int {
		da, db := f.isDemoted(a), f.isDemoted(b)
		switch {
		case da == db:
			return 0
		case db:
			return -1
		}
		return 1
	})
	return out
}

// originFirst moves the origin to the front of sources, unless it was
// demoted lately: then the peers known from membership go first.
func (f *Fetcher) originFirst(sources []source) []source {
	out := slices.Clone(sources)
	slices.SortStableFunc(out, func(a, b source) int {
		switch {
		case a.origin == b.origin:
			return 0
		case a.origin:
			return -1
		}
		return 1
	})
	return f.demotedLast(out)
}

// fetch downloads, checks and stores one bundle, in phases: the head,
// its checks, the module (unless the store holds it), the whole bundle's
// checks and the store write. The bundle is stored only once every check
// passed.
func (f *Fetcher) fetch(ctx context.Context, want Want, peers []string, origin string) (*splice.Verified, error) {
	digest := want.ManifestDigest
	log := f.log.With("digest", digest)
	sources := f.sources(peers, origin)
	if len(sources) == 0 {
		return nil, fmt.Errorf("fetch %s: %w: no peers and no origin (that a member advertises)", digest, ErrUnavailable)
	}
	skip := map[string]bool{}

	head, headFrom, err := f.fetchHead(ctx, digest, sources, skip, log)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: head: %w", digest, err)
	}
	// Verify it before anything else is downloaded.
	m, err := f.verifyHead(head)
	if err != nil {
		return nil, f.refuse(digest, err)
	}
	log = log.With("id", m.ID, "version", m.Version)

	module, err := f.storedModule(m)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", digest, err)
	}
	if module == nil {
		module, err = f.fetchModule(ctx, m, moduleSources(sources, headFrom), skip, log)
		if err != nil {
			return nil, fmt.Errorf("fetch %s: module: %w", digest, err)
		}
	}
	return f.keep(want, head, m, module, log)
}

// fetchHead downloads the head (manifest and signatures), checked against
// the digest, and says which source served it. Heads are small, so the
// origin, which surely has it, goes first (unless it timed out lately):
// asking peers that may not have it yet costs more than it saves. Every
// request, and the phase as a whole, is bounded in time.
func (f *Fetcher) fetchHead(ctx context.Context, digest string, sources []source, skip map[string]bool, log *slog.Logger) (*splice.Head, source, error) {
	var head *splice.Head
	var from source
	hctx, cancel := context.WithTimeout(ctx, f.total)
	defer cancel()
	err := f.rounds(hctx, f.originFirst(sources), skip, log, "head", func(ctx context.Context, s source) error {
		rctx, cancel := context.WithTimeout(ctx, f.headTimeout)
		defer cancel()
		h, err := f.getHead(rctx, s, digest)
		if err == nil {
			head, from = h, s
		}
		return err
	})
	if err != nil {
		return nil, source{}, err
	}
	f.stats.heads.Add(1)
	return head, from, nil
}

// modulePeersTried is how many peers, picked at random, a module fetch
// asks before the head's source and the origin.
const modulePeersTried = 3

// moduleSources orders the sources for a module, preferably others than
// the head's: a few peers other than the head's first (asking every peer
// that may not have it yet costs more than it saves), then the head's,
// the origin last.
func moduleSources(sources []source, headFrom source) []source {
	spread := make([]source, 0, modulePeersTried+2)
	for _, s := range sources {
		if !s.origin && s != headFrom && len(spread) < modulePeersTried {
			spread = append(spread, s)
		}
	}
	if !headFrom.origin {
		spread = append(spread, headFrom)
	}
	for _, s := range sources {
		if s.origin {
			spread = append(spread, s)
		}
	}
	return spread
}

// fetchModule downloads the module the verified manifest m names, from
// sources in order (those demoted lately last); a seeding server that
// refuses names the peers it served, and those are tried next. Each
// request may take the stall allowance plus the module's size at the
// minimum rate; the phase as a whole, the fetch's bound plus one request.
func (f *Fetcher) fetchModule(ctx context.Context, m *splice.Manifest, sources []source, skip map[string]bool, log *slog.Logger) ([]byte, error) {
	var module []byte
	each := f.stall + time.Duration(m.Module.Size)*time.Second/time.Duration(f.minRate)
	mctx, cancel := context.WithTimeout(ctx, f.total+each)
	defer cancel()
	err := f.rounds(mctx, f.demotedLast(sources), skip, log, "module", func(ctx context.Context, s source) error {
		rctx, cancel := context.WithTimeout(ctx, each)
		defer cancel()
		b, err := f.getModule(rctx, s, m.Module.SHA256, m.Module.Size)
		if err == nil {
			module = b
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	f.stats.modules.Add(1)
	return module, nil
}

// keep verifies the whole bundle once more, then stores it as want says.
// A module downloaded for a bundle that is not stored in the end goes
// again, unless a stored bundle names it.
func (f *Fetcher) keep(want Want, head *splice.Head, m *splice.Manifest, module []byte, log *slog.Logger) (*splice.Verified, error) {
	digest := want.ManifestDigest
	b := &splice.Bundle{Major: splice.FormatMajor, Minor: splice.FormatMinor,
		Manifest: head.Manifest, Module: module, Signatures: head.Signatures}
	unstored := func() {
		if err := f.store.RemoveUnusedModule(m.Module.SHA256); err != nil {
			log.Warn("remove a module downloaded for a bundle not stored", "err", err)
		}
	}
	v, err := splice.Verify(b, f.verifier, f.now())
	if err != nil {
		unstored()
		return nil, f.refuse(digest, err)
	}
	put := func() error { return f.store.Put(v) }
	if want.Store == nil {
		want.Store = func(put func() error) error { return put() }
	}
	if err := want.Store(put); err != nil {
		unstored()
		return nil, fmt.Errorf("fetch %s: %w", digest, err)
	}
	log.Info("bundle fetched and verified", "module_bytes", len(module))
	return v, nil
}

// verifyHead runs the checks of the bundle's reading order that need no
// module: signatures over the raw manifest, then the manifest, its expiry.
func (f *Fetcher) verifyHead(h *splice.Head) (*splice.Manifest, error) {
	if _, err := f.verifier.Verify(h.Manifest, h.Signatures); err != nil {
		return nil, &splice.RejectError{Reason: splice.ErrSignature, Err: err}
	}
	m, err := splice.ParseManifest(h.Manifest)
	if err != nil {
		return nil, err
	}
	if now := f.now(); m.Expires != nil && now.After(*m.Expires) {
		return nil, &splice.RejectError{Reason: splice.ErrExpired,
			Err: fmt.Errorf("%s version %d expired at %s", m.ID, m.Version, m.Expires.UTC().Format(time.RFC3339))}
	}
	return m, nil
}

// storedModule returns the module when the store already holds it (another
// bundle with the same module, or a fetch interrupted after the rename).
func (f *Fetcher) storedModule(m *splice.Manifest) ([]byte, error) {
	file, size, err := f.store.OpenModule(m.Module.SHA256)
	if errors.Is(err, splice.ErrNotStored) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer file.Close()
	if size != m.Module.Size {
		return nil, nil
	}
	data, err := io.ReadAll(io.LimitReader(file, size+1))
	if err != nil || int64(len(data)) != size || splice.Digest(data) != m.Module.SHA256 {
		return nil, nil // fetch it again; the download replaces the file
	}
	return data, nil
}

// rounds tries each source in order until one succeeds, for 1+retries
// rounds with exponential backoff between them. A source that served bad
// bytes, or that timed out or could not be reached (it is demoted too),
// is marked in skip and not asked again; one that answered without
// serving is asked at most maxAttempts times; one that was busy (429)
// may be asked every round. ctx bounds the whole.
func (f *Fetcher) rounds(ctx context.Context, sources []source, skip map[string]bool, log *slog.Logger, what string, try func(context.Context, source) error) error {
	last := map[string]error{} // each source's latest failure
	tries := map[string]int{}
	for round := 0; round <= f.retries; round++ {
		if round > 0 {
			wait := min(f.backoff<<min(round-1, 20), f.maxWait)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w (%w)", ctx.Err(), joinLast(sources, last))
			case <-t.C:
			}
		}
		tried := 0
		for i := 0; i < len(sources); i++ {
			s := sources[i]
			if skip[s.base] || tries[s.base] >= maxAttempts {
				continue
			}
			tried++
			err := try(ctx, s)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%w (%w)", ctx.Err(), joinLast(sources, last))
			}
			last[s.base] = err
			var busy *referralError
			var status *StatusError
			switch {
			case errors.As(err, &busy):
				// A seeding server names peers that hold it: try them next.
				sources = f.withHints(sources, i+1, busy.peers)
			case errors.As(err, &status) && status.Code == http.StatusTooManyRequests:
			case errors.Is(err, ErrBadPeer):
				skip[s.base] = true
				f.stats.badPeer.Add(1)
				log.Warn("skipping a source that served bad bytes", "what", what, "source", s.base, "err", err)
			case errors.As(err, &status):
				tries[s.base]++
				log.Debug("source did not serve", "what", what, "source", s.base, "err", err)
			default:
				// Timed out, unreachable or cut off: not asked again in
				// this fetch, and last by the next ones for a while.
				skip[s.base] = true
				f.demote(s)
				log.Info("demoted a source that timed out or could not be reached", "what", what, "source", s.base, "err", err)
			}
		}
		if tried == 0 {
			break
		}
	}
	return joinLast(sources, last)
}

// joinLast is the ErrUnavailable of a fetch that found nothing, with each
// source's latest failure.
func joinLast(sources []source, last map[string]error) error {
	var errs []error
	for _, s := range sources {
		if err := last[s.base]; err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return fmt.Errorf("%w: no source left to try", ErrUnavailable)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

// referralError is a 429 that names peers holding what was asked for.
type referralError struct {
	source string
	peers  []string
}

func (e *referralError) Error() string {
	return fmt.Sprintf("%s: busy, referred to %d peers", e.source, len(e.peers))
}

// StatusError is a peer's answer other than 200 without a referral.
type StatusError struct {
	Source string // the peer's address
	Code   int    // the HTTP status code
	Status string // the HTTP status line
}

func (e *StatusError) Error() string { return e.Source + ": " + e.Status }

// withHints inserts the hinted peers not already listed into sources at
// position at, so they are tried next. A hint that is not a member's
// blob service is dropped and counted: a referral cannot aim the fleet
// at another host.
func (f *Fetcher) withHints(sources []source, at int, peers []string) []source {
	known := map[string]bool{}
	for _, s := range sources {
		known[s.base] = true
	}
	var add []source
	for _, p := range peers {
		if p == f.self || !ValidHostPort(p) {
			continue
		}
		s := sourceFor(p, false)
		if !known[s.base] && f.allowed(p) {
			known[s.base] = true
			add = append(add, s)
		}
	}
	if len(add) == 0 {
		return sources
	}
	return slices.Insert(sources, min(at, len(sources)), add...)
}

// get issues one GET and returns the response when its status is 200.
func (f *Fetcher) get(ctx context.Context, s source, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPeer, err)
	}
	if f.self != "" {
		req.Header.Set(HolderHeader, f.self)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, MaxErrorBody))
		f.count(s, n)
		_ = resp.Body.Close()
		if hint := resp.Header.Get(PeersHeader); resp.StatusCode == http.StatusTooManyRequests && hint != "" {
			peers := strings.Split(hint, ",")
			return nil, &referralError{source: s.base, peers: peers[:min(len(peers), maxHints)]}
		}
		return nil, &StatusError{Source: s.base, Code: resp.StatusCode, Status: resp.Status}
	}
	return resp, nil
}

func (f *Fetcher) count(s source, n int64) {
	if n <= 0 {
		return
	}
	if s.origin {
		f.stats.originBytes.Add(uint64(n))
	} else {
		f.stats.peerBytes.Add(uint64(n))
	}
}

func (f *Fetcher) getHead(ctx context.Context, s source, digest string) (*splice.Head, error) {
	resp, err := f.get(ctx, s, HeadsPath+digest)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.ContentLength > splice.MaxHeadSize {
		return nil, fmt.Errorf("%w: %s: head of %d bytes, limit %d", ErrBadPeer, s.base, resp.ContentLength, splice.MaxHeadSize)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, splice.MaxHeadSize+1))
	f.count(s, int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: read head: %w", s.base, err)
	}
	if len(data) > splice.MaxHeadSize {
		return nil, fmt.Errorf("%w: %s: head longer than %d bytes", ErrBadPeer, s.base, splice.MaxHeadSize)
	}
	h, err := splice.DecodeHead(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadPeer, s.base, err)
	}
	if got := splice.Digest(h.Manifest); got != digest {
		return nil, fmt.Errorf("%w: %s: manifest sha256 %s, asked for %s", ErrBadPeer, s.base, got, digest)
	}
	return h, nil
}

// getModule downloads a module of exactly size bytes into a
// "*.unverified" file while hashing it, and renames it into the store
// once the digest matches. It returns the bytes.
func (f *Fetcher) getModule(ctx context.Context, s source, sha string, size int64) ([]byte, error) {
	resp, err := f.get(ctx, s, ModulesPath+sha)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.ContentLength >= 0 && resp.ContentLength != size {
		return nil, fmt.Errorf("%w: %s: module of %d bytes, manifest says %d", ErrBadPeer, s.base, resp.ContentLength, size)
	}
	tmp, err := f.store.CreateModule(sha)
	if err != nil {
		return nil, fmt.Errorf("create download file: %w", err)
	}
	defer tmp.Abort()
	buf := bytes.NewBuffer(make([]byte, 0, size))
	hash := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, hash, buf), io.LimitReader(resp.Body, size+1))
	f.count(s, n)
	switch {
	case n > size:
		return nil, fmt.Errorf("%w: %s: module longer than the %d bytes the manifest says", ErrBadPeer, s.base, size)
	case err != nil:
		return nil, fmt.Errorf("%s: read module: %w", s.base, err)
	case n < size:
		return nil, fmt.Errorf("%w: %s: module of %d bytes, manifest says %d", ErrBadPeer, s.base, n, size)
	}
	if got := hex.EncodeToString(hash.Sum(nil)); got != sha {
		return nil, fmt.Errorf("%w: %s: module sha256 %s, manifest says %s", ErrBadPeer, s.base, got, sha)
	}
	if err := tmp.Commit(); err != nil {
		return nil, fmt.Errorf("store module %s: %w", sha, err)
	}
	return buf.Bytes(), nil
}
