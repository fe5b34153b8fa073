package agent

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/splicefleet/splicefleet/distrib"
)

// TestControlSocketIsOwnerOnly: the control socket is a socket of mode
// 0600 owned by the user that started the agent.
func TestControlSocketIsOwnerOnly(t *testing.T) {
	f := newTestFleet(t)
	a := f.start(f.config("host"))
	fi, err := os.Lstat(a.cfg.ControlSocket)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 || int(st.Uid) != os.Getuid() {
		t.Errorf("control socket: mode %s, owner %d; want a socket of mode 0600 owned by %d", fi.Mode(), st.Uid, os.Getuid())
	}
}

// TestControlSocketRefusesOtherUsers: another user (nobody) cannot
// connect to the control socket, even when every folder above it is open
// to all: the kernel refuses the connection on the socket's own mode.
// Its owner can.
func TestControlSocketRefusesOtherUsers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test connects as another user and needs root (make test runs as root)")
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is needed to connect as another user (scripts/test-deps.sh installs it)")
	}
	f := newTestFleet(t)
	a := f.start(f.config("host"))
	// Open every folder from the test's own temporary root down, so that
	// only the socket's mode stands in the way.
	for d := filepath.Dir(a.cfg.ControlSocket); strings.HasPrefix(d, filepath.Dir(f.dir)); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dial := func(uid uint32) (string, error) {
		cmd := exec.Command(curl, "-sS", "--max-time", "10", "-X", "POST", "--data-binary", "x",
			"--unix-socket", a.cfg.ControlSocket, "http://agent/v1/publish")
		if uid != 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	out, err := dial(65534)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Errorf("nobody connected to the control socket: %v: %s", err, out)
	}
	// The same connection succeeds once the socket's mode lets others in:
	// the mode is what refused it.
	if err := os.Chmod(a.cfg.ControlSocket, 0o666); err != nil {
		t.Fatal(err)
	}
	if out, err := dial(65534); err != nil || !strings.Contains(out, "not a splicefleet bundle") {
		t.Errorf("nobody, socket mode 0666: %v: %s", err, out)
	}
	if err := os.Chmod(a.cfg.ControlSocket, 0o600); err != nil {
		t.Fatal(err)
	}
	// The owner reaches the API (and the garbage bundle is refused).
	out, err = dial(0)
	if err != nil || !strings.Contains(out, "not a splicefleet bundle") {
		t.Errorf("root: %v: %s", err, out)
	}
}

// TestTCPListenerChangesNothing: the public listener answers 404 or 405
// to every path of the control API and to every method but GET (and
// HEAD) on its own paths, and changes nothing.
func TestTCPListenerChangesNothing(t *testing.T) {
	f := newTestFleet(t)
	a := f.start(f.config("host"))
	v, err := a.Publish(f.bundle("tcp", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, a)
	base := "http://" + a.HTTPAddr()
	bundle := f.bundle("tcp-other", 1, f.signer, 0)
	control := []string{"/v1/publish", "/v1/check", "/v1/rollouts", "/v1/rollouts/tcp", "/v1/commands", "/v1/bundles", "/v1/members",
		"/v1/fleet", "/v1/keys", "/v1/keys/install", "/v1/keys/use", "/v1/keys/remove", "/v1/bundles/" + v.ManifestDigest + "/forget"}
	public := []string{"/healthz", "/metrics", "/v1/index", "/v1/docs", "/v1/docs/" + v.ManifestDigest,
		"/v1/reports/" + v.ManifestDigest, distrib.HeadsPath + v.ManifestDigest, distrib.ModulesPath + v.Manifest.Module.SHA256}
	try := func(method, path string) {
		req, err := http.NewRequest(method, base+path, bytes.NewReader(bundle))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s %s on the TCP listener: %s", method, path, resp.Status)
		}
	}
	for _, p := range control {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			try(m, p)
		}
	}
	for _, p := range public {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			try(m, p)
		}
	}
	assertUnchanged(t, a, before)
}
