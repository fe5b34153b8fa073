package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/objdiff"
)

// object compiles C source the way livepatch diffs want it and returns
// the object's path in the test folder.
func (c *cli) object(name, src string) string {
	c.t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		c.t.Fatalf("gcc is not installed: run `make test-deps` (or apt-get install gcc); the diff tests compile C: %v", err)
	}
	cfile := c.write(name+".c", []byte(src))
	obj := c.path(name + ".o")
	out, err := exec.Command(gcc, "-c", "-O2", "-g", "-ffunction-sections", "-fdata-sections",
		"-fno-asynchronous-unwind-tables", "-fno-pic", "-fdebug-prefix-map="+c.dir+"=.", cfile, "-o", obj).CombinedOutput()
	if err != nil {
		c.t.Fatalf("gcc %s: %v\n%s", name, err, out)
	}
	return obj
}

const diffPre = `
static int limit = 5;
void set_limit(int v) { limit = v; }
int compute(int x) { return x * 3 + limit; }
`

func TestDiffCommandSafe(t *testing.T) {
	c := newCLI(t)
	pre := c.object("pre", diffPre)
	post := c.object("post", strings.Replace(diffPre, "x * 3", "x * 7", 1))

	code, out, errs := c.run("diff", pre, post)
	if code != exitOK || errs != "" {
		t.Fatalf("diff: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		`changed functions: 1\n  compute\s+\.text\.compute\s+(size \d+ -> \d+ bytes, )?code differs at \+0x\w+\n`,
		`added functions: 0\n`,
		`removed functions: 0\n`,
		`can be livepatched\n$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "cannot") {
		t.Errorf("safe diff says cannot:\n%s", out)
	}

	code, out, errs = c.run("diff", "--json", pre, post)
	if code != exitOK || errs != "" {
		t.Fatalf("diff --json: exit %d\n%s%s", code, out, errs)
	}
	var res objdiff.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.Changed) != 1 || res.Changed[0].Name != "compute" || len(res.Added)+len(res.Removed)+len(res.Unsafe) != 0 ||
		res.Pre != pre || res.Post != post || !res.DebugInfo {
		t.Errorf("diff --json: %+v", res)
	}
}

func TestDiffCommandUnsafe(t *testing.T) {
	c := newCLI(t)
	pre := c.object("pre", diffPre)
	post := c.object("post", strings.Replace(diffPre, "limit = 5", "limit = 6", 1))

	code, out, errs := c.run("diff", pre, post)
	if code != exitRefused {
		t.Fatalf("diff: exit %d, want %d\n%s%s", code, exitRefused, out, errs)
	}
	if !regexp.MustCompile(`changed functions: 0\n[\s\S]*cannot be livepatched:\n  data\s+limit\s+initial value differs at \+0x0: the kernel keeps the variable`).MatchString(out) {
		t.Errorf("output:\n%s", out)
	}
	if !strings.HasPrefix(errs, "splicefleet: objdiff: "+pre+" -> "+post+" cannot be livepatched safely: data limit: initial value differs") ||
		strings.Count(errs, "\n") != 1 {
		t.Errorf("stderr: %q", errs)
	}

	code, out, _ = c.run("diff", "--json", pre, post)
	var res objdiff.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if code != exitRefused || len(res.Unsafe) != 1 || res.Unsafe[0].Kind != objdiff.KindData || res.Unsafe[0].Name != "limit" ||
		res.Unsafe[0].Section != ".data.limit" || len(res.Changed) != 0 {
		t.Errorf("diff --json: exit %d, %+v", code, res)
	}
}

func TestDiffCommandBadInput(t *testing.T) {
	c := newCLI(t)
	pre := c.object("pre", diffPre)
	obj, err := os.ReadFile(pre)
	if err != nil {
		t.Fatal(err)
	}
	truncated := c.write("truncated.o", obj[:len(obj)/2])
	garbage := c.write("garbage.o", []byte("not an object at all, not even close, no ELF header here..............."))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"diff", pre, truncated}, truncated + ": malformed object"},
		{[]string{"diff", garbage, pre}, garbage + ": malformed object: not an ELF file"},
		{[]string{"diff", pre, c.path("missing.o")}, "no such file"},
		{[]string{"diff", pre}, "accepts 2 arg(s)"},
	} {
		code, out, errs := c.run(tc.args...)
		if code != exitError || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, out, errs, exitError, tc.want)
		}
	}
}
