package agent

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testuid"
)

const nobody = 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("this test acts as another user and needs root (make test runs as root)")
	}
}

// TestControlSocketRefusesUnsafeFolder: the agent does not start when
// another user could replace its control socket: the socket's folder is
// writable by others, belongs to another user, or sits in a folder
// others can write without the sticky bit. It names the folder and the
// fix, and creates no socket. Below a sticky folder like /tmp it starts.
func TestControlSocketRefusesUnsafeFolder(t *testing.T) {
	needRoot(t)
	f := newTestFleet(t)
	for _, c := range []struct {
		name  string
		setup func(parent, dir string) error
		want  string // "" starts
	}{
		{"world-writable folder", func(_, dir string) error { return os.Chmod(dir, 0o777) }, "is writable by group or others (mode 0777)"},
		{"group-writable folder", func(_, dir string) error { return os.Chmod(dir, 0o770) }, "is writable by group or others (mode 0770)"},
		{"another user's folder", func(_, dir string) error { return os.Chown(dir, nobody, nobody) }, "belongs to uid 65534, not to the agent's user (uid 0)"},
		{"writable folder above", func(parent, _ string) error { return os.Chmod(parent, 0o777) }, "above it is writable by group or others (mode 0777) without the sticky bit"},
		{"another user's folder above", func(parent, _ string) error { return os.Chown(parent, nobody, nobody) }, "above it belongs to uid 65534"},
		{"sticky folder above", func(parent, _ string) error { return os.Chmod(parent, 0o777|os.ModeSticky) }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := f.config(strings.ReplaceAll(c.name, " ", "-"))
			parent := filepath.Join(filepath.Dir(cfg.StateDir), "run")
			dir := filepath.Join(parent, "splicefleet")
			cfg.ControlSocket = filepath.Join(dir, "ctl.sock")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := c.setup(parent, dir); err != nil {
				t.Fatal(err)
			}
			if c.want == "" {
				f.start(cfg)
				return
			}
			_, err := New(withSimKernel(t, Options{Config: cfg, Version: "test", Tuning: f.tuning, Logger: warnLogger(t)}))
			if !errors.Is(err, ErrUnsafeControlSocket) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New = %v, want %v saying %q", err, ErrUnsafeControlSocket, c.want)
			}
			if _, err := os.Lstat(cfg.ControlSocket); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused control socket was created: %v", err)
			}
		})
	}
}

// impostor is another user's socket in the control socket's place: it
// counts every byte a client sends it and answers every request as the
// agent would.
type impostor struct {
	socket   string
	received atomic.Int64
}

func startImpostor(t *testing.T, uid int) *impostor {
	t.Helper()
	needRoot(t)
	tmp := t.TempDir()
	// The other user must reach the folder: open the test's folders.
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(tmp, "run")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	im := &impostor{socket: filepath.Join(dir, "ctl.sock")}
	ln, err := testuid.ListenUnix(uid, uid, im.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"done": "install"})
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(countingListener{ln, &im.received}) }()
	t.Cleanup(func() { _ = srv.Close() })
	return im
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// TestControlClientRefusesAnImpostor: a socket that another user (nobody)
// put in a folder it controls gets nothing from the control client,
// neither a gossip key nor a signed document, and the error says why.
// The same server run by root gets the request: the peer's user is what
// refused it.
func TestControlClientRefusesAnImpostor(t *testing.T) {
	im := startImpostor(t, nobody)
	c := NewControlClient(im.socket)
	for _, path := range []string{"/v1/keys/install", "/v1/rollouts", "/v1/publish"} {
		err := c.Do("POST", path, strings.NewReader("cGxlYXNlIGRvIG5vdCBzZW5kIG1lIGFueXdoZXJlISE="), nil)
		if !errors.Is(err, ErrUntrustedControlPeer) || !strings.Contains(err.Error(), "served by a process of uid 65534") ||
			strings.Contains(err.Error(), "is the agent running") {
			t.Errorf("POST %s to another user's socket: %v, want %v naming uid 65534", path, err, ErrUntrustedControlPeer)
		}
	}
	if n := im.received.Load(); n != 0 {
		t.Errorf("the impostor received %d bytes", n)
	}

	root := startImpostor(t, 0)
	if err := NewControlClient(root.socket).Do("POST", "/v1/keys/install", strings.NewReader("key"), nil); err != nil {
		t.Fatalf("root's socket: %v", err)
	}
	if root.received.Load() == 0 {
		t.Error("root's socket received nothing")
	}
}

// TestCheckControlPeer: root and the caller's own user are trusted; the
// owner of a folder under /tmp (which anyone can make) is not.
func TestCheckControlPeer(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "ctl.sock")
	if err := checkControlPeer(socket, 0); err != nil {
		t.Errorf("root: %v", err)
	}
	if err := checkControlPeer(socket, nobody); !errors.Is(err, ErrUntrustedControlPeer) {
		t.Errorf("the owner of a folder under %s: %v, want %v", os.TempDir(), err, ErrUntrustedControlPeer)
	}
	if onlyRootCanChange(os.TempDir()) {
		t.Errorf("onlyRootCanChange(%s): everyone can write there", os.TempDir())
	}
	if !onlyRootCanChange("/") {
		t.Error("onlyRootCanChange(/) = false")
	}
}
