package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestDebianPackage builds the package with make deb, checks it with
// lintian as Debian's archive would (no tag that the package's overrides
// file does not explain), and does to this machine what an operator's
// package manager does: installs it with dpkg -i, checks the files, their
// modes and the units, reinstalls it over an edited configuration,
// removes it (the state directory and the configuration stay), and purges
// it (nothing of it stays). It needs root, dpkg and lintian; CI is all
// three.
func TestDebianPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and installs a Debian package (make test runs it)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("installing a Debian package needs root: run make test as root")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "dpkg-query", "dpkg-parsechangelog", "systemd-analyze", "make", "lintian", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run make test-deps", tool)
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "splicefleet").Output(); err == nil && len(out) > 0 && string(out) != "not-installed" {
		t.Fatalf("splicefleet is already installed here (%s); this test installs and purges it, so it will not run over an operator's install", out)
	}
	before := systemFiles(t)

	// Build with known version information, to see it in the binary.
	const ver, deb = "9.8.7-test", "9.8.7~test"
	root, _ := filepath.Abs("../..")
	outDir := t.TempDir()
	mk := exec.Command("make", "-C", root, "deb", "VERSION="+ver, "COMMIT=c0ffee1", "DATE=2026-11-27T12:00:00Z", "DEB_VERSION="+deb)
	mk.Env = append(os.Environ(), "MAKEFLAGS=")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	built, _ := filepath.Glob(filepath.Join(root, "dist/out/splicefleet_"+deb+"_*.deb"))
	if len(built) != 1 {
		t.Fatalf("make deb made %v", built)
	}
	pkg := filepath.Join(outDir, filepath.Base(built[0]))
	if err := os.Rename(built[0], pkg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "-P", "splicefleet").CombinedOutput(); err != nil {
			t.Logf("cleanup purge: %v\n%s", err, out)
		}
	})

	// What the package carries, before installing it: every command's man
	// page (dpkg may be set to skip /usr/share/man on minimal systems, so
	// read them from the package itself).
	contents := sh(t, "dpkg-deb", "-c", pkg)
	var want []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		want = append(want, "./usr/share/man/man1/"+strings.ReplaceAll(c.CommandPath(), " ", "-")+".1.gz")
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(&env{}))
	want = append(want, "./usr/share/man/man5/"+configPageName+".5.gz")
	for _, p := range want {
		if !strings.Contains(contents, p+"\n") {
			t.Errorf("the package has no man page %s", p)
		}
	}
	if len(want) < 30 {
		t.Errorf("only %d commands found for man pages", len(want))
	}
	checkPackageMetadata(t, root, pkg, deb, contents)
	agentMan := extract(t, pkg, "./usr/share/man/man1/splicefleet-agent.1.gz")
	if !bytes.Contains(gunzip(t, agentMan), []byte(`.TH "SPLICEFLEET\-AGENT" "1"`)) || !bytes.Contains(gunzip(t, agentMan), []byte(`\fB\-\-config\fR`)) {
		t.Errorf("splicefleet-agent(1) is not a man page of the agent command")
	}

	sh(t, "dpkg", "-i", pkg)
	for path, mode := range map[string]fs.FileMode{
		"/usr/bin/splicefleet":                                  0o755,
		"/lib/systemd/system/splicefleet.service":               0o644,
		"/lib/systemd/system/splicefleet-boot.service":          0o644,
		"/etc/splicefleet":                                      fs.ModeDir | 0o750,
		"/etc/splicefleet/agent.yaml":                           0o640,
		"/var/lib/splicefleet":                                  fs.ModeDir | 0o700,
		"/usr/share/bash-completion/completions/splicefleet":    0o644,
		"/usr/share/zsh/vendor-completions/_splicefleet":        0o644,
		"/usr/share/fish/vendor_completions.d/splicefleet.fish": 0o644,
	} {
		st, err := os.Stat(path)
		if err != nil {
			t.Errorf("installed: %v", err)
			continue
		}
		if st.Mode() != mode {
			t.Errorf("%s: mode %s, want %s", path, st.Mode(), mode)
		}
	}
	if conf := sh(t, "dpkg-query", "-W", "-f=${Conffiles}", "splicefleet"); !strings.Contains(conf, "/etc/splicefleet/agent.yaml") {
		t.Errorf("agent.yaml is not a conffile: %q", conf)
	}
	version := sh(t, "/usr/bin/splicefleet", "version")
	for _, w := range []string{"splicefleet " + ver + " (commit c0ffee1, built 2026-11-27T12:00:00Z)", "protocol 1 to ", "bundle format 1."} {
		if !strings.Contains(version, w) {
			t.Errorf("splicefleet version lacks %q:\n%s", w, version)
		}
	}
	if out := sh(t, "bash", "-c", "source /usr/share/bash-completion/completions/splicefleet && complete -p splicefleet"); !strings.Contains(out, "splicefleet") {
		t.Errorf("bash completion registers nothing: %q", out)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no",
		"/lib/systemd/system/splicefleet.service", "/lib/systemd/system/splicefleet-boot.service").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The installed units are the sandboxed ones, and the agent's checks
	// its configuration before it starts.
	for _, unit := range []string{"/lib/systemd/system/splicefleet.service", "/lib/systemd/system/splicefleet-boot.service"} {
		if e := exposure(t, unit); e > maxExposure {
			t.Errorf("%s: systemd-analyze security exposure %.1f, want at most %.1f", unit, e, maxExposure)
		}
	}
	if unit := slurp(t, "/lib/systemd/system/splicefleet.service"); !bytes.Contains(unit, []byte("\nExecStartPre=/usr/bin/splicefleet agent --check-config --config /etc/splicefleet/agent.yaml\n")) ||
		bytes.Contains(unit, []byte("ConditionPathExists=")) {
		t.Errorf("the installed agent unit does not check its configuration with --check-config:\n%s", unit)
	}
	// Until the keys are in place, the check fails and says which.
	if out, err := exec.Command("/usr/bin/splicefleet", "agent", "--check-config", "--config", "/etc/splicefleet/agent.yaml").CombinedOutput(); err == nil ||
		!bytes.Contains(out, []byte("/etc/splicefleet/trusted.asc: no such file")) || !bytes.Contains(out, []byte("/etc/splicefleet/gossip.keys: no such file")) {
		t.Errorf("check-config of the installed configuration without keys: %v\n%s", err, out)
	}
	for _, link := range []string{
		"/etc/systemd/system/multi-user.target.wants/splicefleet.service",
		"/etc/systemd/system/sysinit.target.wants/splicefleet-boot.service",
	} {
		if target, err := os.Readlink(link); err != nil || !strings.HasSuffix(target, filepath.Base(link)) {
			t.Errorf("not enabled: %s -> %q (%v)", link, target, err)
		}
	}

	// The operator configures the host; an upgrade (here a reinstall)
	// keeps the edited configuration.
	edited := append(slurp(t, "/etc/splicefleet/agent.yaml"), []byte("log_level: debug\n")...)
	writeFile(t, "/etc/splicefleet/agent.yaml", edited, 0o640)
	writeFile(t, "/etc/splicefleet/gossip.keys", []byte("a2V5\n"), 0o600)
	writeFile(t, "/var/lib/splicefleet/journal", []byte("state\n"), 0o600)
	sh(t, "dpkg", "-i", pkg)
	if got := slurp(t, "/etc/splicefleet/agent.yaml"); !bytes.Equal(got, edited) {
		t.Errorf("reinstalling replaced the edited configuration")
	}

	sh(t, "dpkg", "-r", "splicefleet")
	for _, gone := range []string{"/usr/bin/splicefleet", "/lib/systemd/system/splicefleet.service", "/lib/systemd/system/splicefleet-boot.service"} {
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("remove left %s", gone)
		}
	}
	for _, kept := range []string{"/var/lib/splicefleet/journal", "/etc/splicefleet/agent.yaml", "/etc/splicefleet/gossip.keys"} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("remove took what it must keep: %v", err)
		}
	}

	sh(t, "dpkg", "-P", "splicefleet")
	after := systemFiles(t)
	if extra := missingFrom(after, before); len(extra) > 0 {
		t.Errorf("purge left files behind:\n%s", strings.Join(extra, "\n"))
	}
	if missing := missingFrom(before, after); len(missing) > 0 {
		t.Errorf("install and purge removed files that were there before:\n%s", strings.Join(missing, "\n"))
	}
}

// checkPackageMetadata checks what Debian asks of a package beside its
// program: lintian finds nothing the overrides do not explain (each
// override with its reason), the Maintainer is the last commit's author,
// the copyright file is machine-readable and names every module the
// binary links, the changelog is one dpkg reads and is of this version,
// and the docs the README links to are beside it.
func checkPackageMetadata(t *testing.T, root, pkg, version, contents string) {
	t.Helper()
	// --fail-on none: the output is judged here, tag by tag; -I shows the
	// informational tags too. Overridden tags are not shown.
	lint := exec.Command("lintian", "--fail-on", "none", "-I", "--pedantic", pkg)
	out, err := lint.CombinedOutput()
	if err != nil {
		t.Fatalf("lintian: %v\n%s", err, out)
	}
	tags := regexp.MustCompile(`(?m)^[EWIPX]: .*$`).FindAllString(string(out), -1)
	if len(tags) > 0 {
		t.Errorf("lintian reports %d tag(s) (fix them, or override with a reason in dist/debian/lintian-overrides):\n%s", len(tags), strings.Join(tags, "\n"))
	}
	t.Logf("lintian %s: %d tags", strings.TrimSpace(string(shOut(t, "lintian", "--version"))), len(tags))
	overrides := string(extract(t, pkg, "./usr/share/lintian/overrides/splicefleet"))
	var reason bool
	for _, l := range strings.Split(overrides, "\n") {
		switch {
		case strings.HasPrefix(l, "#"):
			reason = true
		case strings.TrimSpace(l) == "":
			reason = false
		case strings.HasPrefix(l, "splicefleet: ") && !reason:
			t.Errorf("lintian override without a reason above it: %s", l)
		}
	}

	maintainer := strings.TrimSpace(string(shOut(t, "git", "-C", root, "log", "-1", "--format=%an <%ae>")))
	if got := strings.TrimSpace(sh(t, "dpkg-deb", "-f", pkg, "Maintainer")); got != maintainer || strings.Contains(got, "localhost") {
		t.Errorf("Maintainer: %q, want the last commit's author %q", got, maintainer)
	}

	copyright := string(extract(t, pkg, "./usr/share/doc/splicefleet/copyright"))
	for _, want := range []string{
		"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n",
		"\nFiles: *\nCopyright: ", " splicefleet developers\nLicense: no-licence-granted\n",
		"\nLicense: Apache-2.0\n On Debian systems, the full text of this licence is in\n /usr/share/common-licenses/Apache-2.0.\n",
	} {
		if !strings.Contains(copyright, want) {
			t.Errorf("the copyright file lacks %q", want)
		}
	}
	// Every module go version -m lists, and nothing else.
	modules := regexp.MustCompile(`(?m)^\tdep\t(\S+)\t(\S+)`).FindAllStringSubmatch(sh(t, "go", "version", "-m", filepath.Join(root, "bin/splicefleet")), -1)
	if len(modules) < 10 {
		t.Fatalf("go version -m lists %d modules", len(modules))
	}
	for _, m := range modules {
		if !strings.Contains(copyright, "\nFiles: "+m[1]+"@"+m[2]+"/*\nCopyright: ") {
			t.Errorf("the copyright file has no paragraph for %s %s", m[1], m[2])
		}
	}
	if n := strings.Count(copyright, "\nFiles: "); n != len(modules)+2 {
		t.Errorf("the copyright file has %d Files paragraphs, want %d (splicefleet, the Go standard library, %d modules)", n, len(modules)+2, len(modules))
	}

	changelog := filepath.Join(t.TempDir(), "changelog")
	writeFile(t, changelog, gunzip(t, extract(t, pkg, "./usr/share/doc/splicefleet/changelog.gz")), 0o644)
	if got := strings.TrimSpace(sh(t, "dpkg-parsechangelog", "-l", changelog, "-S", "Version")); got != version {
		t.Errorf("the changelog's version is %q, want %q", got, version)
	}
	if got := strings.TrimSpace(sh(t, "dpkg-parsechangelog", "-l", changelog, "-S", "Maintainer")); got != maintainer {
		t.Errorf("the changelog is signed by %q, want %q", got, maintainer)
	}
	if subject := strings.TrimSpace(string(shOut(t, "git", "-C", root, "log", "-1", "--no-merges", "--format=%s"))); !strings.Contains(strings.Join(strings.Fields(sh(t, "dpkg-parsechangelog", "-l", changelog, "-S", "Changes")), " "), strings.Join(strings.Fields(subject), " ")) {
		t.Errorf("the changelog lacks the last commit, %q", subject)
	}

	readme := slurp(t, filepath.Join(root, "README.md"))
	docs := regexp.MustCompile(`\]\((docs/[A-Za-z0-9_-]+\.md)`).FindAllSubmatch(readme, -1)
	if len(docs) < 5 {
		t.Fatalf("the README links to %d docs", len(docs))
	}
	for _, d := range docs {
		if p := "./usr/share/doc/splicefleet/" + string(d[1]); !strings.Contains(contents, p+"\n") {
			t.Errorf("the package lacks %s, which the README links to", p)
		}
	}
}

// shOut runs a command and returns its standard output alone.
func shOut(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// systemFiles lists the paths a package of this kind could touch, leaving
// out dpkg's own bookkeeping and logs.
func systemFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	skip := regexp.MustCompile(`^/var/lib/(dpkg|apt|systemd/deb-systemd-helper-masked)(/|$)|^/var/(cache|log|tmp)(/|$)`)
	for _, top := range []string{"/etc", "/lib/systemd", "/usr/bin", "/usr/share/man/man1", "/usr/share/doc", "/usr/share/lintian/overrides", "/usr/share/bash-completion",
		"/usr/share/zsh", "/usr/share/fish", "/var", "/run/splicefleet"} {
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if skip.MatchString(p) {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			out = append(out, p)
			return nil
		})
	}
	slices.Sort(out)
	return out
}

// missingFrom returns what is in a and not in b.
func missingFrom(a, b []string) []string {
	var out []string
	for _, p := range a {
		if _, found := slices.BinarySearch(b, p); !found {
			out = append(out, p)
		}
	}
	return out
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// extract returns one file of a package's data.
func extract(t *testing.T, pkg, path string) []byte {
	t.Helper()
	dir := t.TempDir()
	sh(t, "dpkg-deb", "-x", pkg, dir)
	return slurp(t, filepath.Join(dir, path))
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func slurp(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, p string, b []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
}
