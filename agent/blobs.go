package agent

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The blob service is read-only and content-addressed; peers fetch from it:
//
//	GET /v1/heads/<manifest sha256>   200 application/json: the head wire format
//	                                  {"manifest": "<base64>", "signatures": ["<base64>", ...]},
//	                                  at most MaxHeadSize bytes
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
// module request. Once the server has uploaded SeedCopies copies of a
// module it is seeding (one published here, see Seed) within SeedWindow,
// it answers further requests for it with 429 and the PeersHeader listing
// the fetchers it served, which by then hold the module too; so the origin
// of a new bundle uploads only a few copies however large the fleet, and
// the fleet serves itself. A server that knows no such peer never refuses
// for this reason. Every server names the peers it served when it is busy.
const (
	headsPath   = "/v1/heads/"
	modulesPath = "/v1/modules/"

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
	// Logger receives one debug line per refused request. Default: none.
	Logger *slog.Logger
}

// BlobServerStats counts what a blob server did.
type BlobServerStats struct {
	HeadsServed       uint64 // complete 200 responses for heads
	ModulesServed     uint64 // complete 200 responses for modules
	BytesServed       uint64 // body bytes written, heads and modules
	ModuleBytesServed uint64 // of which module bytes
	Busy              uint64 // requests refused with 429
	NotFound          uint64 // 404s
	BadRequests       uint64 // 400s
}

// BlobServer serves a Store's heads and modules.
type BlobServer struct {
	store  *Store
	log    *slog.Logger
	seed   BlobServerOptions
	seedMu sync.Mutex
	seeds  map[string]*seedState
	origin map[string]bool // modules published here
	slots  chan struct{}
	mux    *http.ServeMux
	stats  struct{ heads, modules, bytes, moduleBytes, busy, notFound, bad atomic.Uint64 }
	wrapRd func(io.Reader) io.Reader // tests hold uploads open through it
}

// NewBlobServer returns the read-only blob service over store.
func NewBlobServer(store *Store, opts BlobServerOptions) *BlobServer {
	if opts.MaxConcurrentUploads <= 0 {
		opts.MaxConcurrentUploads = DefaultMaxConcurrentUploads
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SeedWindow <= 0 {
		opts.SeedWindow = 10 * time.Second
	}
	s := &BlobServer{store: store, log: opts.Logger, seed: opts, seeds: map[string]*seedState{}, origin: map[string]bool{},
		slots: make(chan struct{}, opts.MaxConcurrentUploads), mux: http.NewServeMux()}
	s.mux.HandleFunc("GET "+headsPath+"{digest}", s.serveHead)
	s.mux.HandleFunc("GET "+modulesPath+"{digest}", s.serveModule)
	return s
}

// ServeHTTP implements http.Handler.
func (s *BlobServer) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Stats returns the counters so far.
func (s *BlobServer) Stats() BlobServerStats {
	return BlobServerStats{
		HeadsServed:       s.stats.heads.Load(),
		ModulesServed:     s.stats.modules.Load(),
		BytesServed:       s.stats.bytes.Load(),
		ModuleBytesServed: s.stats.moduleBytes.Load(),
		Busy:              s.stats.busy.Load(),
		NotFound:          s.stats.notFound.Load(),
		BadRequests:       s.stats.bad.Load(),
	}
}

// seedState is what a server knows of one module it uploads.
type seedState struct {
	since   time.Time
	copies  int
	holders []string // fetchers served, newest last, at most maxHints
}

// hints returns the peers that fetched sha here, for a PeersHeader.
func (s *BlobServer) hints(sha string) string {
	s.seedMu.Lock()
	defer s.seedMu.Unlock()
	if st := s.seeds[sha]; st != nil {
		return strings.Join(st.holders, ",")
	}
	return ""
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

// seeded reports whether the server has uploaded its share of a module it
// seeds and knows peers that hold it.
func (s *BlobServer) seeded(sha string) bool {
	if s.seed.SeedCopies <= 0 {
		return false
	}
	s.seedMu.Lock()
	defer s.seedMu.Unlock()
	if !s.origin[sha] {
		return false
	}
	st := s.seeds[sha]
	return st != nil && time.Since(st.since) < s.seed.SeedWindow && st.copies >= s.seed.SeedCopies && len(st.holders) > 0
}

// uploaded records a complete upload of sha to the fetcher r names.
func (s *BlobServer) uploaded(sha string, r *http.Request) {
	s.seedMu.Lock()
	defer s.seedMu.Unlock()
	st := s.seeds[sha]
	if st == nil || time.Since(st.since) >= s.seed.SeedWindow {
		if len(s.seeds) >= 1024 {
			clear(s.seeds) // bounded: old modules' records go
		}
		st = &seedState{since: time.Now(), holders: st.holdersOrNil()}
		s.seeds[sha] = st
	}
	st.copies++
	if h := r.Header.Get(HolderHeader); validHostPort(h) && !slices.Contains(st.holders, h) {
		st.holders = append(st.holders, h)
		if len(st.holders) > maxHints {
			st.holders = st.holders[len(st.holders)-maxHints:]
		}
	}
}

func (st *seedState) holdersOrNil() []string {
	if st == nil {
		return nil
	}
	return st.holders
}

func validHostPort(s string) bool {
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
		if peers := s.hints(sha); peers != "" {
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
	if !ValidDigest(d) {
		s.stats.bad.Add(1)
		http.Error(w, "digest must be 64 lower-case hex digits", http.StatusBadRequest)
		return "", false
	}
	return d, true
}

func (s *BlobServer) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, ErrNotStored) {
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
	body, err := EncodeHead(h)
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
	if s.seeded(sha) {
		s.refuse(w, r, sha, "this module has spread: fetch it from the peers listed")
		return
	}
	if !s.acquire(w, r, sha) {
		return
	}
	defer s.release()
	f, size, err := s.store.OpenModule(sha)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer f.Close()
	body := io.LimitReader(f, size)
	if s.wrapRd != nil {
		body = s.wrapRd(body)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	n, err := io.Copy(w, body)
	s.stats.bytes.Add(uint64(n))
	s.stats.moduleBytes.Add(uint64(n))
	if err == nil && n == size {
		s.uploaded(sha, r) // before the counter: tests wait on the counter
		s.stats.modules.Add(1)
	}
}
