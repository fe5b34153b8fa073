package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/splicefleet/splicefleet/distrib"
	"github.com/splicefleet/splicefleet/hostkey"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// httpHandler serves the TCP listener: the health check, the metrics, the
// index and the read-only, content-addressed blob service peers fetch from.
func (a *Agent) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		// The agent is up either way (a liveness probe must not restart
		// it in a loop); what it cannot do is said on the next line.
		_, _ = io.WriteString(w, "ok\n")
		if why := a.livepatchMissing(); why != "" {
			_, _ = io.WriteString(w, "warning: "+why+"\n")
		}
	})
	mux.HandleFunc("GET /v1/index", func(w http.ResponseWriter, r *http.Request) {
		entries, err := a.store.List()
		if err != nil {
			http.Error(w, "store unavailable", http.StatusInternalServerError)
			return
		}
		idx := make([]IndexEntry, 0, len(entries))
		for _, e := range entries {
			idx = append(idx, IndexEntry{ID: e.ID, Version: e.Version, ManifestDigest: e.Digest, Size: e.Size})
		}
		writeJSON(w, http.StatusOK, idx)
	})
	mux.HandleFunc("GET /v1/reports/{plan}", func(w http.ResponseWriter, r *http.Request) {
		ans, ok := a.ro.served(r.PathValue("plan"), r.URL.Query().Get("node"), r.URL.Query().Get("failed") == "1")
		if !ok {
			http.Error(w, "no such rollout", http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, ans)
	})
	mux.HandleFunc("GET /v1/docs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.ro.docIndex())
	})
	mux.HandleFunc("GET /v1/docs/{digest}", func(w http.ResponseWriter, r *http.Request) {
		data, err := a.ro.Doc(r.PathValue("digest"))
		if err != nil {
			http.Error(w, "no such document", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	})
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.Handle(distrib.HeadsPath, a.blobs)
	mux.Handle(distrib.ModulesPath, streaming(a.blobs))
	return mux
}

// publicReason is a failure reason as it may leave the host: what the
// operator's health command printed (which may hold anything the command
// reads) is cut, leaving its class, such as "health check: health command
// failed: exit status 3". The host's signed reports carry this, since
// every agent serves them on the unauthenticated TCP port
// (/v1/reports/PLAN); the whole reason stays on this host, in its
// rollout's record and in its log ("host state in rollout"). The host
// judges its own part by the same words, so every host names the same
// cause.
func publicReason(reason string) string {
	i := strings.Index(reason, healthCommandFailed)
	if i < 0 {
		return reason
	}
	if j := strings.IndexByte(reason[i:], ';'); j >= 0 {
		return reason[:i+j]
	}
	return reason
}

// PublishResult is the control API's answer to a publish.
type PublishResult struct {
	ID             string `json:"id"`
	Version        uint64 `json:"version"`
	ManifestDigest string `json:"manifest_digest"`
}

// APIError is the control API's error body.
type APIError struct {
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"` // set when the bundle was refused
}

// MemberStatus is one host in the fleet view.
type MemberStatus struct {
	Name    string `json:"name"`
	Addr    string `json:"addr"`
	Status  string `json:"status"`
	Kernel  string `json:"kernel,omitempty"`
	Arch    string `json:"arch,omitempty"`
	BuildID string `json:"build_id,omitempty"`
	Version string `json:"agent_version,omitempty"`
	// Revision and GoVersion are the commit and Go version the agent was
	// built from and with, as it answered the query.
	Revision  string `json:"agent_revision,omitempty"`
	GoVersion string `json:"agent_go_version,omitempty"`
	Held      string `json:"held,omitempty"`
	// Applied is the host's applied patch stack, oldest first.
	Applied string `json:"applied,omitempty"`
	// Simulated says the host runs the simulated kernel, a test double.
	Simulated bool              `json:"simulated,omitempty"`
	Tags      map[string]string `json:"tags,omitempty"` // the user's tags
	// Bundles are what the host answered it holds ("id@version"), when
	// the view was taken with a query; Answered says whether it answered
	// within the timeout.
	Bundles  []string `json:"bundles,omitempty"`
	Answered bool     `json:"answered"`
}

// FleetStatus lists every member with what its gossip tags say.
func (a *Agent) FleetStatus() []MemberStatus {
	var out []MemberStatus
	for _, m := range a.node.Members() {
		s := MemberStatus{Name: m.Name, Addr: m.Addr, Status: m.Status, Kernel: m.Tags[TagKernel], Arch: m.Tags[TagArch],
			BuildID: m.Tags[TagBuildID], Version: m.Tags[TagVersion], Held: m.Tags[TagHeld], Applied: m.Tags[TagApplied], Simulated: m.Tags[TagSim] == "1"}
		for k, v := range m.Tags {
			if !strings.HasPrefix(k, "sf.") {
				if s.Tags == nil {
					s.Tags = map[string]string{}
				}
				s.Tags[k] = v
			}
		}
		out = append(out, s)
	}
	return out
}

// statusQuery is the gossip query every agent answers with what it holds.
const statusQuery = "sf-status"

// statusAnswer is an agent's answer to statusQuery; it must fit serf's
// 1024-byte answer limit, so the bundle list is cut when it would not.
type statusAnswer struct {
	Held    int      `json:"held"`
	Bundles []string `json:"bundles,omitempty"`
	More    bool     `json:"more,omitempty"`
	// Revision and Go name the agent's build beside the version its
	// tags carry (older agents leave them out).
	Revision string `json:"rev,omitempty"`
	Go       string `json:"go,omitempty"`
}

func (a *Agent) answerStatus([]byte) ([]byte, error) {
	entries, err := a.store.List()
	if err != nil {
		return nil, err
	}
	ans := statusAnswer{Held: len(entries), Revision: safeTag(a.revision, 40), Go: safeTag(runtime.Version(), 40)}
	for _, e := range entries {
		ans.Bundles = append(ans.Bundles, fmt.Sprintf("%s@%d", e.ID, e.Version))
	}
	for {
		out, err := json.Marshal(ans)
		if err != nil || len(out) <= 900 || len(ans.Bundles) == 0 {
			return out, err
		}
		ans.Bundles, ans.More = ans.Bundles[:len(ans.Bundles)/2], true
	}
}

// FleetStatusQuery asks every member, over gossip, what it holds, and
// waits exactly timeout for the answers; members that did not answer are
// listed with Answered false.
func (a *Agent) FleetStatusQuery(ctx context.Context, timeout time.Duration) ([]MemberStatus, error) {
	answers, err := a.node.Query(ctx, statusQuery, nil, timeout)
	if err != nil {
		return nil, err
	}
	byName := map[string]statusAnswer{}
	for _, r := range answers {
		var ans statusAnswer
		if json.Unmarshal(r.Payload, &ans) == nil {
			byName[r.From] = ans
		}
	}
	out := a.FleetStatus()
	for i := range out {
		if ans, ok := byName[out[i].Name]; ok {
			out[i].Answered = true
			out[i].Held = strconv.Itoa(ans.Held)
			out[i].Bundles = ans.Bundles
			out[i].Revision, out[i].GoVersion = ans.Revision, ans.Go
		}
	}
	return out, nil
}

// controlHandler serves the local control API on the unix socket, for
// everything that changes state.
func (a *Agent) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/publish", a.servePublish)
	mux.HandleFunc("POST /v1/check", a.serveCheck)
	mux.HandleFunc("POST /v1/rollouts", a.docHandler(a.StartRollout))
	mux.HandleFunc("POST /v1/commands", a.docHandler(a.Command))
	mux.HandleFunc("POST /v1/rekeys", a.docHandler(a.Rekey))
	mux.HandleFunc("GET /v1/hostkey", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"node": a.cfg.NodeName, "key": hostkey.Encode(a.hostKey.Public())})
	})
	mux.HandleFunc("GET /v1/rollouts", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Rollouts())
	})
	mux.HandleFunc("GET /v1/rollouts/{key}", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.Rollout(r.PathValue("key"))
		if err != nil {
			writeJSON(w, http.StatusNotFound, APIError{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /v1/bundles", func(w http.ResponseWriter, r *http.Request) {
		entries, err := a.store.List()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, APIError{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, entries)
	})
	mux.HandleFunc("POST /v1/bundles/{digest}/forget", a.serveForget)
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.node.Members())
	})
	mux.HandleFunc("POST /v1/members/{name}/force-leave", a.serveForceLeave)
	mux.HandleFunc("GET /v1/fleet", a.serveFleet)
	mux.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		keys, err := a.node.ListKeys(r.Context())
		if err != nil {
			writeJSON(w, http.StatusBadGateway, APIError{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, keys)
	})
	for op, f := range map[string]func(*http.Request, string) error{
		"install": func(r *http.Request, k string) error { return a.node.InstallKey(r.Context(), k) },
		"use":     func(r *http.Request, k string) error { return a.node.UseKey(r.Context(), k) },
		"remove":  func(r *http.Request, k string) error { return a.node.RemoveKey(r.Context(), k) },
	} {
		mux.HandleFunc("POST /v1/keys/"+op, serveKeyOp(op, f))
	}
	return mux
}

// servePublish is POST /v1/publish: a bundle to verify, store and announce.
func (a *Agent) servePublish(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, splice.MaxBundleSize+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, APIError{Error: err.Error()})
		return
	}
	if len(raw) > splice.MaxBundleSize {
		writeJSON(w, http.StatusRequestEntityTooLarge, APIError{Error: "bundle larger than the format allows", Reason: "too_large"})
		return
	}
	v, err := a.Publish(raw)
	if err != nil {
		status := http.StatusInternalServerError
		if splice.IsReject(err) {
			status = http.StatusUnprocessableEntity
		}
		writeJSON(w, status, APIError{Error: err.Error(), Reason: splice.Reason(err)})
		return
	}
	writeJSON(w, http.StatusOK, PublishResult{ID: v.Manifest.ID, Version: v.Manifest.Version, ManifestDigest: v.ManifestDigest})
}

// serveForget is POST /v1/bundles/{digest}/forget: drop a held bundle here.
func (a *Agent) serveForget(w http.ResponseWriter, r *http.Request) {
	e, err := a.Forget(r.PathValue("digest"))
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, e)
	case errors.Is(err, splice.ErrInvalidDigest):
		writeJSON(w, http.StatusBadRequest, APIError{Error: err.Error(), Reason: "invalid"})
	case errors.Is(err, splice.ErrNotStored):
		writeJSON(w, http.StatusNotFound, APIError{Error: err.Error(), Reason: "not_held"})
	case errors.Is(err, ErrBundleInUse):
		writeJSON(w, http.StatusConflict, APIError{Error: err.Error(), Reason: "in_use"})
	default:
		writeJSON(w, http.StatusInternalServerError, APIError{Error: err.Error()})
	}
}

// serveForceLeave is POST /v1/members/{name}/force-leave.
func (a *Agent) serveForceLeave(w http.ResponseWriter, r *http.Request) {
	was, err := a.ForceLeave(r.PathValue("name"))
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]string{"node": r.PathValue("name"), "was": was})
	case errors.Is(err, ErrNoMember):
		writeJSON(w, http.StatusNotFound, APIError{Error: err.Error(), Reason: "not_member"})
	case errors.Is(err, ErrMemberAlive):
		writeJSON(w, http.StatusConflict, APIError{Error: err.Error(), Reason: "not_failed"})
	default:
		writeJSON(w, http.StatusBadGateway, APIError{Error: err.Error()})
	}
}

// serveFleet is GET /v1/fleet?timeout=D: every member's status, asked
// over gossip.
func (a *Agent) serveFleet(w http.ResponseWriter, r *http.Request) {
	timeout := 2 * time.Second
	if s := r.URL.Query().Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > time.Minute {
			writeJSON(w, http.StatusBadRequest, APIError{Error: "timeout: want a duration up to 1m"})
			return
		}
		timeout = d
	}
	st, err := a.FleetStatusQuery(r.Context(), timeout)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, APIError{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// serveKeyOp is POST /v1/keys/OP with a gossip key as the body.
func serveKeyOp(op string, f func(*http.Request, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(io.LimitReader(r.Body, 256))
		if err == nil {
			err = f(r, strings.TrimSpace(string(raw)))
		}
		if err != nil {
			writeJSON(w, http.StatusBadGateway, APIError{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"done": op})
	}
}

// CheckRequest is the body of POST /v1/check: a bundle and, optionally,
// a signed plan document for it (as rollout.Document.Encode writes it).
type CheckRequest struct {
	Bundle []byte `json:"bundle"`
	Plan   []byte `json:"plan,omitempty"`
}

// serveCheck answers what publishing a bundle with a plan would do
// (Check); it changes nothing.
func (a *Agent) serveCheck(w http.ResponseWriter, r *http.Request) {
	const limit = (splice.MaxBundleSize+rollout.MaxDocumentSize)/3*4 + 1<<10
	var req CheckRequest
	raw, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err == nil && len(raw) > limit {
		err = errors.New("larger than a bundle and a plan may be")
	}
	if err == nil {
		err = json.Unmarshal(raw, &req)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, APIError{Error: "check request: " + err.Error()})
		return
	}
	var plan *rollout.Document
	if req.Plan != nil {
		if plan, err = rollout.DecodeDocument(req.Plan); err != nil {
			a.metricRefused("plan", err)
			writeJSON(w, http.StatusUnprocessableEntity, APIError{Error: "plan: " + err.Error(), Reason: refusalReason(err)})
			return
		}
	}
	res, err := a.Check(req.Bundle, plan)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, res)
	case splice.IsReject(err):
		writeJSON(w, http.StatusUnprocessableEntity, APIError{Error: err.Error(), Reason: splice.Reason(err)})
	case errors.Is(err, ErrRolloutRefused):
		writeJSON(w, http.StatusUnprocessableEntity, APIError{Error: err.Error(), Reason: refusalReason(err)})
	default:
		writeJSON(w, http.StatusInternalServerError, APIError{Error: err.Error()})
	}
}

// docHandler serves a POST of a signed plan or command document.
func (a *Agent) docHandler(accept func(*rollout.Document) (rollout.Status, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(io.LimitReader(r.Body, rollout.MaxDocumentSize+1))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, APIError{Error: err.Error()})
			return
		}
		d, err := rollout.DecodeDocument(raw)
		if err == nil {
			var st rollout.Status
			if st, err = accept(d); err == nil {
				writeJSON(w, http.StatusOK, st)
				return
			}
		}
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrRolloutRefused), errors.Is(err, rollout.ErrInvalidDocument):
			status = http.StatusUnprocessableEntity
		case errors.Is(err, ErrNoRollout):
			status = http.StatusNotFound
		}
		writeJSON(w, status, APIError{Error: err.Error(), Reason: refusalReason(err)})
	}
}

// refusalReason labels a refused plan or command.
func refusalReason(err error) string {
	switch {
	case errors.Is(err, rollout.ErrUnsignedReport):
		return "unsigned"
	case errors.Is(err, hostkey.ErrKeyMismatch):
		return "key"
	case errors.Is(err, rollout.ErrReportSignature):
		return "signature"
	case errors.Is(err, rollout.ErrMalformedEvent):
		return "invalid"
	case errors.Is(err, rollout.ErrReplayed):
		return "replayed"
	case errors.Is(err, rollout.ErrExpired):
		return "expired"
	case signing.IsVerificationError(err):
		return "signature"
	case errors.Is(err, rollout.ErrDuplicateKey):
		return "duplicate_key"
	case errors.Is(err, rollout.ErrInvalidDocument), errors.Is(err, rollout.ErrInvalidPlan), errors.Is(err, rollout.ErrInvalidCommand),
		errors.Is(err, rollout.ErrInvalidRekey):
		return "invalid"
	case errors.Is(err, ErrRolloutRefused), errors.Is(err, ErrReportRefused):
		return "refused"
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ControlClient talks to an agent's control socket.
type ControlClient struct {
	c *http.Client
}

// NewControlClient dials the agent's unix socket. Before it sends
// anything on a connection it checks who serves the socket (see
// checkControlPeer) and fails with ErrUntrustedControlPeer when it is
// neither root, the caller's user nor the agent's user.
func NewControlClient(socket string) *ControlClient {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", socket)
		if err != nil {
			return nil, err
		}
		return dialControl(c, socket)
	}}
	return &ControlClient{c: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
}

// Do sends a request to the control API and decodes the answer into out;
// an error answer becomes an error carrying the agent's message.
func (c *ControlClient) Do(method, path string, body io.Reader, out any) error {
	req, err := http.NewRequest(method, "http://agent"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.c.Do(req)
	var ue *url.Error
	if errors.As(err, &ue) && errors.Is(err, ErrUntrustedControlPeer) {
		return fmt.Errorf("agent control socket: %w", ue.Err)
	}
	if err != nil {
		return fmt.Errorf("agent control socket: %w (is the agent running?)", err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		var e APIError
		if err := dec.Decode(&e); err != nil || e.Error == "" {
			return fmt.Errorf("agent answered %s", resp.Status)
		}
		if e.Reason != "" {
			return &RefusedError{Reason: e.Reason, Message: e.Error}
		}
		return errors.New(e.Error)
	}
	if out == nil {
		return nil
	}
	return dec.Decode(out)
}

// RefusedError is an agent's refusal of a bundle, seen from the client.
type RefusedError struct{ Reason, Message string }

func (e *RefusedError) Error() string { return e.Message }

// safeTag is s cut to n bytes: what an agent answers about itself stays
// small whatever it was built with.
func safeTag(s string, n int) string { return s[:min(len(s), n)] }
