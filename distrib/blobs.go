package distrib

import (
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/splicefleet/splicefleet/splice"
)

// The blob service is read-only and content-addressed; peers fetch from it:
//
//	GET /v1/heads/<manifest sha256>   200 application/json: the head wire format
//	                                  {"manifest": "<base64>", "signatures": ["<base64>", ...]},
//	                                  at most splice.MaxHeadSize bytes
//	GET /v1/modules/<module sha256>   200 application/octet-stream: the module bytes,
//	                                  with Content-Length
//
// A digest is exactly 64 lower-case hex digits (400 otherwise); something
// not held is 404; when MaxConcurrentUploads responses are already being
// written the answer is 429 with Retry-After, and the fetcher tries
// another peer. Nothing served is trusted by the receiver: it checks the
// manifest's digest, the signatures and the module's digest itself.
//
// Seeding: a fetcher names its own blob service in the HolderHeader of a
// module request. A server seeding a module (one published here, see
// Seed) reserves one of its SeedCopies copies when an upload starts, and
// gives the reservation back when the upload fails. Once its copies
// within SeedWindow, complete or on their way, number SeedCopies, it
// answers further requests for the module with 429 and the PeersHeader
// listing the fetchers it served, which by then hold the module too (no
// list while the first copies are still on their way: the fetcher asks
// again). So the origin of a new bundle uploads at most SeedCopies full
// copies per window however large the fleet and however many ask at
// once, and the fleet serves itself. A server that neither knows such a
// peer nor is uploading to one never refuses for this reason. Every
// server names the peers it served when it is busy.
//
// The HolderHeader is a claim, not a proof: anyone can send a request.
// It counts only when it names the advertised blob service of a current
// member (BlobServerOptions.Member) and, when both are IP addresses, the
// request comes from that address; a referral names only holders that
// are still members. A download that names no such holder (a network
// attacker's, a tool's) is served when a slot is free, but it takes no
// seed copy and its fetcher is never named: a host without the gossip key
// cannot make the origin refer the fleet to servers of its choosing.
const (
	HeadsPath   = "/v1/heads/"   // GET HeadsPath+DIGEST: a stored bundle's head
	ModulesPath = "/v1/modules/" // GET ModulesPath+SHA256: a stored module

	HolderHeader = "X-Splicefleet-Holder" // host:port of the fetcher's own blob service
	PeersHeader  = "X-Splicefleet-Peers"  // comma-separated host:port of peers that fetched the module here
	maxHints     = 16
)

// DefaultMaxConcurrentUploads bounds the responses a blob server writes at
// once when BlobServerOptions does not say.
const DefaultMaxConcurrentUploads = 4

// BlobServerOptions configures NewBlobServer.
type BlobServerOptions struct {
	// MaxConcurrentUploads bounds the responses written at once; more
	// requests get 429. Default DefaultMaxConcurrentUploads.
	MaxConcurrentUploads int
	// SeedCopies, when positive, is how many copies of one module the
	// server uploads within SeedWindow before it points fetchers at the
	// peers it served instead (see the package's seeding note).
	SeedCopies int
	// SeedWindow is the period SeedCopies counts over (default 10 s).
	SeedWindow time.Duration
	// UploadStall is the longest a fetcher may take to accept each chunk
	// of a module (default DefaultUploadStall). A fetcher that reads
	// slower than that, or that does not finish within UploadStall plus
	// the module's size at MinUploadRate, is cut off: the upload slot and
	// the seed copy it held are given back. Without it, four readers
	// that never read would hold every upload slot, and three the
	// origin's seed copies, for as long as they kept the connections
	// open.
	UploadStall time.Duration
	// Member, when set, says whether addr is the advertised blob
	// service of a current member: only such a HolderHeader takes a
	// seed copy and may be named in a referral. Nil trusts every
	// well-formed header (tests of the seeding alone).
	Member func(addr string) bool
	// Logger receives one debug line per refused request. Default: none.
	Logger *slog.Logger
}

// DefaultUploadStall is BlobServerOptions.UploadStall's default, and
// MinUploadRate the slowest a whole upload may go, in bytes a second.
const (
	DefaultUploadStall = 10 * time.Second
	MinUploadRate      = 64 << 10
)

// BlobServerStats counts what a blob server did.
type BlobServerStats struct {
	HeadsServed       uint64 // complete 200 responses for heads
	ModulesServed     uint64 // complete 200 responses for modules
	BytesServed       uint64 // body bytes written, heads and modules
	ModuleBytesServed uint64 // of which module bytes
	Busy              uint64 // requests refused with 429
	TooSlow           uint64 // module uploads cut off: the fetcher read too slowly
	NotFound          uint64 // 404s
	BadRequests       uint64 // 400s
	// HolderClaimsRefused counts module requests whose HolderHeader named
	// no current member's blob service, or not the address the request
	// came from: served, but taking no seed copy and never referred to.
	HolderClaimsRefused uint64
}

// BlobServer serves a Store's heads and modules.
type BlobServer struct {
	store  *splice.Store
	log    *slog.Logger
	seed   BlobServerOptions
	seedMu sync.Mutex
	seeds  map[string]*seedState
	origin map[string]bool // modules published here
	slots  chan struct{}
	mux    *http.ServeMux
	stats  struct{ heads, modules, bytes, moduleBytes, busy, notFound, bad, slow, claims atomic.Uint64 }
	wrapRd func(io.Reader) io.Reader // tests hold uploads open through it
}

// NewBlobServer returns the read-only blob service over store.
func NewBlobServer(store *splice.Store, opts BlobServerOptions) *BlobServer {
	if opts.MaxConcurrentUploads <= 0 {
		opts.MaxConcurrentUploads = DefaultMaxConcurrentUploads
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SeedWindow <= 0 {
		opts.SeedWindow = 10 * time.Second
	}
	if opts.UploadStall <= 0 {
		opts.UploadStall = DefaultUploadStall
	}
	s := &BlobServer{store: store, log: opts.Logger, seed: opts, seeds: map[string]*seedState{}, origin: map[string]bool{},
		slots: make(chan struct{}, opts.MaxConcurrentUploads), mux: http.NewServeMux()}
	s.mux.HandleFunc("GET "+HeadsPath+"{digest}", s.serveHead)
	s.mux.HandleFunc("GET "+ModulesPath+"{digest}", s.serveModule)
	return s
}

// ServeHTTP implements http.Handler.
func (s *BlobServer) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Stats returns the counters so far.
func (s *BlobServer) Stats() BlobServerStats {
	return BlobServerStats{
		HeadsServed:         s.stats.heads.Load(),
		ModulesServed:       s.stats.modules.Load(),
		BytesServed:         s.stats.bytes.Load(),
		ModuleBytesServed:   s.stats.moduleBytes.Load(),
		Busy:                s.stats.busy.Load(),
		TooSlow:             s.stats.slow.Load(),
		NotFound:            s.stats.notFound.Load(),
		BadRequests:         s.stats.bad.Load(),
		HolderClaimsRefused: s.stats.claims.Load(),
	}
}

// seedState is what a server knows of one module it uploads.
type seedState struct {
	since    time.Time // the seeding window's start
	copies   int       // complete uploads within the window
	inflight int       // uploads under way to members
	pending  int       // of which to fetchers that named their blob service
	holders  []string  // fetchers served, newest last, at most maxHints
}

// Hints returns the peers that fetched sha here, for a PeersHeader.
func (s *BlobServer) Hints(sha string) string {
	s.seedMu.Lock()
	defer s.seedMu.Unlock()
	if st := s.seeds[sha]; st != nil {
		var still []string
		for _, h := range st.holders {
			if s.seed.Member == nil || s.seed.Member(h) {
				still = append(still, h)
			}
		}
		return strings.Join(still, ",")
	}
	return ""
}

// holder returns the fetcher's blob service its HolderHeader names, when
// the claim counts: a member's advertised address, and the address the
// request came from when both are IP addresses. "" otherwise; a claim
// made and not believed is counted.
func (s *BlobServer) holder(r *http.Request) string {
	h := r.Header.Get(HolderHeader)
	if h == "" {
		return ""
	}
	if !ValidHostPort(h) || (s.seed.Member != nil && !s.seed.Member(h)) || !sameHost(h, r.RemoteAddr) {
		s.stats.claims.Add(1)
		s.log.Debug("blob service ignores a holder claim", "holder", h, "remote", r.RemoteAddr)
		return ""
	}
	return h
}

// sameHost says whether the holder's host is the request's remote host,
// when both are IP addresses (a name cannot be checked here).
func sameHost(holder, remote string) bool {
	hh, _, err1 := net.SplitHostPort(holder)
	rh, _, err2 := net.SplitHostPort(remote)
	hip, rip := net.ParseIP(hh), net.ParseIP(rh)
	if err1 != nil || err2 != nil || hip == nil || rip == nil {
		return true
	}
	return hip.Equal(rip)
}

// Seed marks a module as published here: its uploads are capped at
// SeedCopies per SeedWindow once peers that hold it are known.
func (s *BlobServer) Seed(sha string) {
	s.seedMu.Lock()
	defer s.seedMu.Unlock()
	if len(s.origin) >= 1024 {
		clear(s.origin)
	}
	s.origin[sha] = true
}

// state returns sha's record, starting a new window when the last one
// has ended. Called with seedMu held.
func (s *BlobServer) state(sha string) *seedState {
	st := s.seeds[sha]
	if st == nil {
		if len(s.seeds) >= 1024 {
			// Bounded: old modules' records go, not those of uploads
			// under way.
			maps.DeleteFunc(s.seeds, func(_ string, st *seedState) bool { return st.inflight == 0 })
		}
		st = &seedState{since: time.Now()}
		s.seeds[sha] = st
	} else if time.Since(st.since) >= s.seed.SeedWindow {
		st.since, st.copies = time.Now(), 0
	}
	return st
}

// startUpload reserves a copy of sha for holder, the fetcher's blob
// service ("" when it named none that counts). It returns false,
// reserving nothing, when sha is seeded here and its copies within the
// window, complete or under way, already number SeedCopies while peers
// that hold it, or soon will, are known. A download for no holder (see
// holder) reserves no copy: when Member is set, it is not a member's.
func (s *BlobServer) startUpload(sha, holder string) bool {
	s.seedMu.Lock()
	defer s.seedMu.Unlock()
	st := s.state(sha)
	if s.seed.SeedCopies > 0 && s.origin[sha] && st.copies+st.inflight >= s.seed.SeedCopies &&
		(len(st.holders) > 0 || st.pending > 0) {
		return false
	}
	if holder == "" && s.seed.Member != nil {
		return true
	}
	st.inflight++
	if holder != "" {
		st.pending++
	}
	return true
}

// endUpload ends the reservation startUpload made: a complete upload
// counts as a copy and its fetcher as a holder; one that failed gives
// its copy back.
func (s *BlobServer) endUpload(sha, h string, complete bool) {
	s.seedMu.Lock()
	defer s.seedMu.Unlock()
	if h == "" && s.seed.Member != nil {
		return
	}
	st := s.state(sha)
	st.inflight = max(st.inflight-1, 0)
	if h != "" {
		st.pending = max(st.pending-1, 0)
	}
	if !complete {
		return
	}
	st.copies++
	if h != "" && !slices.Contains(st.holders, h) {
		st.holders = append(st.holders, h)
		if len(st.holders) > maxHints {
			st.holders = st.holders[len(st.holders)-maxHints:]
		}
	}
}

func ValidHostPort(s string) bool {
	if s == "" || len(s) > 255 || strings.ContainsAny(s, ", \t\r\n") {
		return false
	}
	_, port, err := net.SplitHostPort(s)
	return err == nil && port != "" && port != "0"
}

// refuse answers 429, pointing at peers that hold sha when it knows some.
func (s *BlobServer) refuse(w http.ResponseWriter, r *http.Request, sha, why string) {
	s.stats.busy.Add(1)
	s.log.Debug("blob service refers the fetcher elsewhere", "why", why, "path", r.URL.Path, "remote", r.RemoteAddr)
	if sha != "" {
		if peers := s.Hints(sha); peers != "" {
			w.Header().Set(PeersHeader, peers)
		}
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, why, http.StatusTooManyRequests)
}

// acquire takes an upload slot, or answers 429 and returns false.
func (s *BlobServer) acquire(w http.ResponseWriter, r *http.Request, sha string) bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
		s.refuse(w, r, sha, "too many concurrent uploads")
		return false
	}
}

func (s *BlobServer) release() { <-s.slots }

// digest checks the path's digest, answering 400 when it is malformed.
func (s *BlobServer) digest(w http.ResponseWriter, r *http.Request) (string, bool) {
	d := r.PathValue("digest")
	if !splice.ValidDigest(d) {
		s.stats.bad.Add(1)
		http.Error(w, "digest must be 64 lower-case hex digits", http.StatusBadRequest)
		return "", false
	}
	return d, true
}

func (s *BlobServer) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, splice.ErrNotStored) {
		s.stats.notFound.Add(1)
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	s.log.Warn("blob service cannot read the store", "path", r.URL.Path, "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

func (s *BlobServer) serveHead(w http.ResponseWriter, r *http.Request) {
	digest, ok := s.digest(w, r)
	if !ok || !s.acquire(w, r, "") {
		return
	}
	defer s.release()
	h, err := s.store.Head(digest)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	body, err := splice.EncodeHead(h)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	n, err := w.Write(body)
	s.stats.bytes.Add(uint64(n))
	if err == nil {
		s.stats.heads.Add(1)
	}
}

func (s *BlobServer) serveModule(w http.ResponseWriter, r *http.Request) {
	sha, ok := s.digest(w, r)
	if !ok {
		return
	}
	f, size, err := s.store.OpenHeldModule(sha)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer f.Close()
	holder := s.holder(r)
	if !s.startUpload(sha, holder) {
		s.refuse(w, r, sha, "this module has spread, or is spreading: fetch it from the peers listed, or ask again")
		return
	}
	ended := false
	defer func() {
		if !ended { // busy, failed or cut short: the copy is given back
			s.endUpload(sha, holder, false)
		}
	}()
	if !s.acquire(w, r, sha) {
		return
	}
	defer s.release()
	body := io.LimitReader(f, size)
	if s.wrapRd != nil {
		body = s.wrapRd(body)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	n, err := s.upload(w, body, size)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.stats.slow.Add(1)
		s.log.Debug("blob service cut off a slow fetcher", "module", sha[:12], "from", r.RemoteAddr, "sent", n, "size", size)
	}
	s.stats.bytes.Add(uint64(n))
	s.stats.moduleBytes.Add(uint64(n))
	if err == nil && n == size {
		s.endUpload(sha, holder, true) // before the counter: tests wait on the counter
		ended = true
		s.stats.modules.Add(1)
	}
}

// uploadChunk is how much of a module the server writes under one
// stall deadline.
const uploadChunk = 32 << 10

// upload writes a module's size bytes from body, each chunk under a write
// deadline of UploadStall and the whole under UploadStall plus size at
// MinUploadRate (see BlobServerOptions.UploadStall). A fetcher too slow
// for either ends with an error wrapping os.ErrDeadlineExceeded.
func (s *BlobServer) upload(w http.ResponseWriter, body io.Reader, size int64) (int64, error) {
	rc := http.NewResponseController(w)
	stall := s.seed.UploadStall
	end := time.Now().Add(stall + time.Duration(size)*time.Second/MinUploadRate)
	buf := make([]byte, uploadChunk)
	var n int64
	for {
		k, rerr := body.Read(buf)
		if k > 0 {
			deadline := time.Now().Add(stall)
			if deadline.After(end) {
				deadline = end
			}
			if err := rc.SetWriteDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return n, err
			}
			m, err := w.Write(buf[:k])
			n += int64(m)
			if err == nil {
				if ferr := rc.Flush(); !errors.Is(ferr, http.ErrNotSupported) {
					err = ferr
				}
			}
			if err != nil {
				return n, err
			}
		}
		switch {
		case errors.Is(rerr, io.EOF):
			return n, nil
		case rerr != nil:
			return n, rerr
		}
	}
}
