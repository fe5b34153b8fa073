package agent

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
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
const (
	headsPath   = "/v1/heads/"
	modulesPath = "/v1/modules/"
)

// DefaultMaxConcurrentUploads bounds the responses a blob server writes at
// once when BlobServerOptions does not say.
const DefaultMaxConcurrentUploads = 4

// BlobServerOptions configures NewBlobServer.
type BlobServerOptions struct {
	// MaxConcurrentUploads bounds the responses written at once; more
	// requests get 429. Default DefaultMaxConcurrentUploads.
	MaxConcurrentUploads int
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
	s := &BlobServer{store: store, log: opts.Logger, slots: make(chan struct{}, opts.MaxConcurrentUploads), mux: http.NewServeMux()}
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

// acquire takes an upload slot, or answers 429 and returns false.
func (s *BlobServer) acquire(w http.ResponseWriter, r *http.Request) bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
		s.stats.busy.Add(1)
		s.log.Debug("blob service busy", "path", r.URL.Path, "remote", r.RemoteAddr)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many concurrent uploads", http.StatusTooManyRequests)
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
	if !ok || !s.acquire(w, r) {
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
	if !ok || !s.acquire(w, r) {
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
		s.stats.modules.Add(1)
	}
}
