package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// cli runs the command in-process the way main does.
type cli struct {
	t   *testing.T
	dir string
	env map[string]string
}

func newCLI(t *testing.T) *cli {
	return &cli{t: t, dir: t.TempDir(), env: map[string]string{}}
}

func (c *cli) path(name string) string { return filepath.Join(c.dir, name) }

func (c *cli) run(args ...string) (code int, stdout, stderr string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	// The default configuration is the test's own agent.yaml (absent
	// unless the test writes it), never the machine's.
	code = runEnv(&env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return c.env[k] },
		now: time.Now, defaultConfig: c.path("agent.yaml")}, args)
	return code, out.String(), errb.String()
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errs := c.run(args...)
	if code != 0 {
		c.t.Fatalf("splicefleet %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func (c *cli) write(name string, data []byte) string {
	c.t.Helper()
	p := c.path(name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *cli) read(name string) []byte {
	c.t.Helper()
	b, err := os.ReadFile(c.path(name))
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

// snapshot records every file in the test folder, to prove a refused
// command wrote nothing.
func (c *cli) snapshot() map[string]string {
	c.t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(c.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return files
}

func sameFiles(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

var livepatchModule = testModule("livepatch_fix", "cmdline_proc_show")

// testModule builds a livepatch module for the default simulated kernel.
func testModule(name string, functions ...string) []byte {
	return fakemodule.Build(fakemodule.Options{Name: name, Livepatch: true, Functions: functions})
}

// publish generates keys, creates a bundle and signs it with the first
// nsign of them; it returns the bundle path.
func (c *cli) publish(nkeys, nsign int) string {
	c.t.Helper()
	var pubs []byte
	for i := range nkeys {
		prefix := c.path("key" + string(rune('a'+i)))
		c.ok("signing-key", "generate", "--uid", "Signer "+string(rune('A'+i))+" <s@example.com>", "--out", prefix)
		pubs = append(pubs, c.read(filepath.Base(prefix)+".pub.asc")...)
	}
	c.write("trusted.asc", pubs)
	mod := c.write("fix.ko", livepatchModule)
	c.ok("create", "--module", mod, "--id", "cve-2026-0001", "--version", "2", "--cve", "cve-2026-0001", "--description", "demo fix", "-o", c.path("fix.splice"))
	for i := range nsign {
		c.ok("sign", "--key", c.path("key"+string(rune('a'+i))+".sec.asc"), c.path("fix.splice"))
	}
	return c.path("fix.splice")
}

func TestCreateSignVerifyInspect(t *testing.T) {
	c := newCLI(t)
	bundle := c.publish(2, 2)
	out := c.ok("verify", "--keyring", c.path("trusted.asc"), "--threshold", "2", bundle)
	for _, want := range []string{"OK ", "cve-2026-0001 version 2 for 6.1.0-56-cloud-amd64/x86_64", "signed by 2 of 2 required keys", "Signer A <s@example.com>", "Signer B <s@example.com>"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}

	var in inspection
	if err := json.Unmarshal([]byte(c.ok("inspect", "--json", bundle)), &in); err != nil {
		t.Fatal(err)
	}
	if in.Manifest == nil || in.Manifest.ID != "cve-2026-0001" || in.Manifest.CVEs[0] != "CVE-2026-0001" ||
		!in.ModuleMatches || in.ModuleInfo == nil || !in.ModuleInfo.Livepatch || len(in.Signatures) != 2 ||
		strings.Join(in.Manifest.Functions, ",") != "cmdline_proc_show" {
		t.Fatalf("inspect: %+v", in)
	}
	text := c.ok("inspect", bundle)
	for _, want := range []string{`id\s+cve-2026-0001`, `functions\s+cmdline_proc_show`, `, matches the manifest`, `livepatch\s+true`, `signatures\s+2\n`} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("inspect lacks %q:\n%s", want, text)
		}
	}

	// The manifest command prints the signed bytes exactly.
	raw := c.read("fix.splice")
	b, err := splice.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ok("manifest", bundle); got != string(b.Manifest) {
		t.Fatalf("manifest output differs from the stored bytes")
	}
	// Signing again with the same key adds a signature that counts once.
	c.ok("sign", "--key", c.path("keya.sec.asc"), bundle)
	if _, err := os.Stat(bundle); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(c.dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestKeyGenerate(t *testing.T) {
	c := newCLI(t)
	c.write("pass", []byte("s3cret\n"))
	out := c.ok("signing-key", "generate", "--uid", "Ops <ops@example.com>", "--out", c.path("ops"), "--passphrase-file", c.path("pass"))
	if !strings.Contains(out, "protected by a passphrase") {
		t.Errorf("output: %s", out)
	}
	st, err := os.Stat(c.path("ops.sec.asc"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("secret key mode %v, want 0600", st.Mode().Perm())
	}
	if !bytes.HasPrefix(c.read("ops.pub.asc"), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		t.Error("public key is not armored")
	}
	// Refuses to overwrite.
	if code, _, errs := c.run("signing-key", "generate", "--uid", "Ops", "--out", c.path("ops")); code != exitError || !strings.Contains(errs, "refusing to overwrite") {
		t.Errorf("overwrite: exit %d %s", code, errs)
	}
	// The passphrase is needed to sign, from the file or the environment.
	mod := c.write("fix.ko", livepatchModule)
	c.ok("create", "--module", mod, "--id", "x", "--version", "1", "-o", c.path("x.splice"))
	if code, _, errs := c.run("sign", "--key", c.path("ops.sec.asc"), c.path("x.splice")); code != exitError || !strings.Contains(errs, "passphrase") {
		t.Errorf("sign without passphrase: exit %d %s", code, errs)
	}
	c.env["SPLICEFLEET_PASSPHRASE"] = "s3cret"
	c.ok("sign", "--key", c.path("ops.sec.asc"), c.path("x.splice"))
	delete(c.env, "SPLICEFLEET_PASSPHRASE")
	c.ok("sign", "--key", c.path("ops.sec.asc"), "--passphrase-file", c.path("pass"), c.path("x.splice"))
	c.write("ops-keyring.asc", c.read("ops.pub.asc"))
	c.ok("verify", "--keyring", c.path("ops-keyring.asc"), c.path("x.splice"))
}

// TestCLIRefuses is the adversarial table at the user's level: each attack
// or bad input exits non-zero with one line that says what is wrong, and
// leaves every file as it was.
func TestCLIRefuses(t *testing.T) {
	type tc struct {
		name string
		// prepare gets a published bundle (signed by key a of keys a, b)
		// and returns the command to run.
		prepare  func(c *cli, bundle string) []string
		wantCode int
		wantErr  string
	}
	flip := func(c *cli, name string, at func(b *splice.Bundle, raw []byte) int) {
		raw := c.read(name)
		b, err := splice.Decode(bytes.NewReader(raw))
		if err != nil {
			c.t.Fatal(err)
		}
		raw[at(b, raw)] ^= 0x01
		c.write(name, raw)
	}
	verify := func(c *cli, bundle string, extra ...string) []string {
		return append([]string{"verify", "--keyring", c.path("trusted.asc"), bundle}, extra...)
	}
	resign := func(c *cli, mutate func(m *splice.Manifest), signWith string) string {
		raw := c.read("fix.splice")
		b, _ := splice.Decode(bytes.NewReader(raw))
		m, _ := splice.ParseManifest(b.Manifest)
		mutate(m)
		nb, err := splice.New(*m, b.Module)
		if err != nil {
			c.t.Fatal(err)
		}
		sec := c.read(signWith)
		s, err := signing.ReadSigner(sec, nil, time.Now())
		if err != nil {
			c.t.Fatal(err)
		}
		sig, _ := s.Sign(nb.Manifest, time.Now())
		if _, err := nb.AddSignature(sig); err != nil {
			c.t.Fatal(err)
		}
		out, _ := nb.Bytes()
		return c.write("resigned.splice", out)
	}
	// withSignature writes fix.splice with sig as its only signature.
	withSignature := func(c *cli, name string, sig []byte) string {
		b, err := splice.Decode(bytes.NewReader(c.read("fix.splice")))
		if err != nil {
			c.t.Fatal(err)
		}
		b.Signatures = nil
		if _, err := b.AddSignature(sig); err != nil {
			c.t.Fatal(err)
		}
		out, _ := b.Bytes()
		return c.write(name, out)
	}
	manifest := func(c *cli) []byte {
		b, err := splice.Decode(bytes.NewReader(c.read("fix.splice")))
		if err != nil {
			c.t.Fatal(err)
		}
		return b.Manifest
	}
	cases := []tc{
		{"signature by a revoked key", func(c *cli, b string) []string {
			e := gpgEntity(c.t, c.read("keya.sec.asc"))
			if err := e.RevokeKey(packet.KeyCompromised, "lost", nil); err != nil {
				c.t.Fatal(err)
			}
			return []string{"verify", "--keyring", c.write("revoked.asc", armoredPublic(c.t, e)), b}
		}, exitRefused, "key revoked"},
		{"expired signature", func(c *cli, b string) []string {
			made := time.Now().Add(-2 * time.Hour)
			e, err := openpgp.NewEntity("Release", "", "release@example.com", &packet.Config{
				Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return made }})
			if err != nil {
				c.t.Fatal(err)
			}
			sig := detachSign(c.t, e, manifest(c), &packet.Config{SigLifetimeSecs: 60, Time: func() time.Time { return made.Add(time.Hour) }})
			keyring := c.write("release.asc", armoredPublic(c.t, e))
			return []string{"verify", "--keyring", keyring, withSignature(c, "expired-sig.splice", sig)}
		}, exitRefused, "signature expired"},
		{"signature by an expired key", func(c *cli, b string) []string {
			made := time.Now().Add(-2 * time.Hour)
			e, err := openpgp.NewEntity("Expired", "", "expired@example.com", &packet.Config{
				Algorithm: packet.PubKeyAlgoEdDSA, KeyLifetimeSecs: 3600, Time: func() time.Time { return made }})
			if err != nil {
				c.t.Fatal(err)
			}
			sig := detachSign(c.t, e, manifest(c), &packet.Config{Time: func() time.Time { return made.Add(30 * time.Minute) }})
			keyring := c.write("expired.asc", armoredPublic(c.t, e))
			return []string{"verify", "--keyring", keyring, withSignature(c, "expired-key.splice", sig)}
		}, exitRefused, "key expired"},
		{"tampered module", func(c *cli, b string) []string {
			flip(c, "fix.splice", func(bb *splice.Bundle, raw []byte) int { return bytes.Index(raw, bb.Module) + len(bb.Module)/2 })
			return verify(c, b)
		}, exitRefused, "module does not match the manifest: module sha256"},
		{"tampered manifest", func(c *cli, b string) []string {
			flip(c, "fix.splice", func(bb *splice.Bundle, raw []byte) int { return bytes.Index(raw, []byte("demo fix")) })
			return verify(c, b)
		}, exitRefused, "signature check failed: verification failed: 0 of 1 required signatures valid; signature 1 by"},
		{"signature by an untrusted key", func(c *cli, b string) []string {
			c.ok("signing-key", "generate", "--uid", "Mallory", "--out", c.path("mallory"))
			c.write("only-b.asc", c.read("keyb.pub.asc"))
			return []string{"verify", "--keyring", c.path("only-b.asc"), b}
		}, exitRefused, "signer is not a trusted key"},
		{"below threshold", func(c *cli, b string) []string { return verify(c, b, "--threshold", "2") },
			exitRefused, "1 of 2 required signatures valid"},
		{"the same key twice toward a threshold", func(c *cli, b string) []string {
			c.ok("sign", "--key", c.path("keya.sec.asc"), b)
			return verify(c, b, "--threshold", "2")
		}, exitRefused, "key already counted"},
		{"truncated file", func(c *cli, b string) []string {
			raw := c.read("fix.splice")
			c.write("fix.splice", raw[:len(raw)-100])
			return verify(c, b)
		}, exitRefused, "truncated bundle"},
		{"unknown format version", func(c *cli, b string) []string {
			raw := c.read("fix.splice")
			raw[9] = 9
			c.write("fix.splice", raw)
			return verify(c, b)
		}, exitRefused, "unsupported bundle format version: format 9.0"},
		{"garbage input", func(c *cli, b string) []string {
			return verify(c, c.write("garbage.splice", []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n")))
		}, exitRefused, "not a splicefleet bundle"},
		{"oversized module section", func(c *cli, b string) []string {
			raw := c.read("fix.splice")
			bb, _ := splice.Decode(bytes.NewReader(raw))
			off := 12 + 5 + len(bb.Manifest) // the module section's header
			raw[off+1], raw[off+2], raw[off+3], raw[off+4] = 0x7f, 0xff, 0xff, 0xff
			c.write("fix.splice", raw)
			return verify(c, b)
		}, exitRefused, "bundle part too large: module is 2147483647 bytes, limit 67108864"},
		{"expired bundle", func(c *cli, b string) []string {
			return verify(c, resign(c, func(m *splice.Manifest) {
				m.Created = time.Now().Add(-2 * time.Hour)
				e := time.Now().Add(-time.Hour)
				m.Expires = &e
			}, "keya.sec.asc"))
		}, exitRefused, "bundle expired"},
		{"manifest names another module", func(c *cli, b string) []string {
			return verify(c, resign(c, func(m *splice.Manifest) { m.Module.Name = "livepatch_other" }, "keya.sec.asc"))
		}, exitRefused, `module is named "livepatch_fix", manifest says "livepatch_other"`},
		{"manifest targets another kernel", func(c *cli, b string) []string {
			return verify(c, resign(c, func(m *splice.Manifest) { m.Target.Release = "6.1.0-99-cloud-amd64" }, "keya.sec.asc"))
		}, exitRefused, "module was built for 6.1.0-56-cloud-amd64, manifest targets 6.1.0-99-cloud-amd64"},
		{"a non-livepatch module", func(c *cli, b string) []string {
			mod := c.write("plain.ko", fakemodule.Build(fakemodule.Options{Name: "plain_driver"}))
			return []string{"create", "--module", mod, "--id", "x", "--version", "1", "-o", c.path("out.splice")}
		}, exitRefused, `module "plain_driver" is not a livepatch module`},
		{"a file that is not a module", func(c *cli, b string) []string {
			mod := c.write("notes.ko", []byte("just some text"))
			return []string{"create", "--module", mod, "--id", "x", "--version", "1", "-o", c.path("out.splice")}
		}, exitRefused, "not a kernel module"},
		{"functions that disagree with the module", func(c *cli, b string) []string {
			return []string{"create", "--module", c.path("fix.ko"), "--id", "x", "--version", "1", "--function", "other", "-o", c.path("out.splice")}
		}, exitRefused, "--function says other, but the module replaces cmdline_proc_show"},
		{"signing a bundle whose module was swapped", func(c *cli, b string) []string {
			flip(c, "fix.splice", func(bb *splice.Bundle, raw []byte) int { return bytes.Index(raw, bb.Module) + 100 })
			return []string{"sign", "--key", c.path("keyb.sec.asc"), b}
		}, exitRefused, "refusing to sign: module does not match the manifest"},
		{"attaching a signature file that is not one", func(c *cli, b string) []string {
			return []string{"sign", "--signature", c.path("keyb.pub.asc"), b}
		}, exitRefused, "malformed signature"},
		{"a keyring that is not one", func(c *cli, b string) []string {
			return []string{"verify", "--keyring", c.write("empty.asc", []byte("not a keyring")), b}
		}, exitError, "read keyring"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c := newCLI(t)
			bundle := c.publish(2, 1)
			args := tt.prepare(c, bundle)
			before := c.snapshot()
			code, out, errs := c.run(args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errs)
			}
			if !strings.Contains(errs, tt.wantErr) {
				t.Errorf("stderr %q lacks %q", errs, tt.wantErr)
			}
			if strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Errorf("error is not one line: %q", errs)
			}
			if after := c.snapshot(); !sameFiles(before, after) {
				t.Errorf("a refused command changed files")
			}
		})
	}
}

// gpgEntity reads a secret key file as an OpenPGP entity, to make keys
// and signatures the command line never makes (revoked, expired).
func gpgEntity(t *testing.T, armored []byte) *openpgp.Entity {
	t.Helper()
	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armored))
	if err != nil || len(el) != 1 {
		t.Fatalf("read key: %v (%d entities)", err, len(el))
	}
	return el[0]
}

// armoredPublic is e's public key, with its revocations, armored.
func armoredPublic(t *testing.T, e *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// detachSign makes a binary detached signature over message.
func detachSign(t *testing.T, e *openpgp.Entity, message []byte, cfg *packet.Config) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := openpgp.DetachSign(&buf, e, bytes.NewReader(message), cfg); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestVersion(t *testing.T) {
	c := newCLI(t)
	out := c.ok("version")
	for _, want := range []string{
		`(?m)^splicefleet \S+ \(commit \S+, built \S+\) ` + regexp.QuoteMeta(runtime.Version()) + `$`,
		fmt.Sprintf(`(?m)^protocol %d to %d \(serf %d to %d\)`, gossip.ProtocolMin, gossip.ProtocolMax, gossip.SerfProtocol(gossip.ProtocolMin), gossip.SerfProtocol(gossip.ProtocolMax)),
		`(?m)^bundle format 1\.0 \(reads 1\.x\)$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("version lacks a line matching %s:\n%s", want, out)
		}
	}
	var b buildInfo
	if err := json.Unmarshal([]byte(c.ok("version", "--json")), &b); err != nil {
		t.Fatal(err)
	}
	if b.ProtocolMin != gossip.ProtocolMin || b.ProtocolMax != gossip.ProtocolMax || b.SerfMax != 5 || b.BundleFormat != "1.0" || b.Version == "" || b.GoVersion != runtime.Version() || b.Commit == "" {
		t.Errorf("version --json: %+v", b)
	}
}

// TestCreateKernelAndFunctionFlags: --kernel names the target of a module
// whose vermagic names no release and must agree with one that does;
// --function names what a module without klp_func tables replaces, and a
// module that names nothing without it is refused with what to give.
func TestCreateKernelAndFunctionFlags(t *testing.T) {
	c := newCLI(t)
	bare := c.write("bare.ko", fakemodule.Build(fakemodule.Options{Name: "livepatch_bare", Livepatch: true, Vermagic: " "}))
	inspect := func(bundle string) splice.Manifest {
		t.Helper()
		var out struct{ Manifest splice.Manifest }
		if err := json.Unmarshal([]byte(c.ok("inspect", "--json", bundle)), &out); err != nil {
			t.Fatal(err)
		}
		return out.Manifest
	}

	c.ok("create", "--module", bare, "--id", "bare", "--version", "1", "--kernel", "6.1.0-56-cloud-amd64",
		"--function", "cmdline_proc_show", "--function", "version_proc_show", "-o", c.path("bare.splice"))
	m := inspect(c.path("bare.splice"))
	if m.Target.Release != "6.1.0-56-cloud-amd64" || !slices.Equal(m.Functions, []string{"cmdline_proc_show", "version_proc_show"}) {
		t.Errorf("manifest target %q, functions %v", m.Target.Release, m.Functions)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"no release anywhere", []string{"--module", bare, "--function", "f"}, exitError, "the module's vermagic names no kernel release; give --kernel"},
		{"no functions anywhere", []string{"--module", bare, "--kernel", "6.1.0-56-cloud-amd64"}, exitError, "does not name the functions it replaces; give them with --function"},
		{"--kernel disagrees with vermagic", []string{"--module", c.write("fix.ko", livepatchModule), "--kernel", "6.1.0-99-cloud-amd64"}, exitRefused, "--kernel 6.1.0-99-cloud-amd64, but the module was built for 6.1.0-56-cloud-amd64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"create", "--id", "x", "--version", "1", "-o", c.path("x.splice")}, tc.args...)
			code, _, errs := c.run(args...)
			if code != tc.code || !strings.Contains(errs, tc.err) {
				t.Errorf("exit %d, stderr %q; want exit %d saying %q", code, errs, tc.code, tc.err)
			}
			if _, err := os.Stat(c.path("x.splice")); err == nil {
				t.Errorf("a refused create wrote its output")
			}
		})
	}
}
