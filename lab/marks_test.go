package lab

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseConsole(t *testing.T) {
	console := "[    0.000000] Linux version 6.1.0\r\n" +
		"@@LAB-BOOT 2.53\r\n" +
		"@@LAB release 6.1.0-56-cloud-amd64\r\n" +
		"some output\r\n" +
		"@@LAB view kernel 6.1.0-56-cloud-amd64 x86_64 build -, livepatch supported\r\n" +
		"[    3.1] random: crng init done@@LAB late  value with  spaces \r\n" +
		"@@LAB flag\r\n" +
		"@@LAB \r\n" +
		"@@LABEL not a mark\r\n" +
		"@@LAB release again\r\n" +
		"@@LAB-EXIT 3\r\n"
	rep := parseConsole(strings.NewReader(console))
	want := Marks{
		{"release", "6.1.0-56-cloud-amd64"},
		{"view", "kernel 6.1.0-56-cloud-amd64 x86_64 build -, livepatch supported"},
		{"late", "value with  spaces"},
		{"flag", ""},
		{"release", "again"},
	}
	if diff := cmp.Diff(want, rep.marks); diff != "" {
		t.Errorf("marks (-want +got):\n%s", diff)
	}
	if !rep.exited || rep.exitCode != 3 {
		t.Errorf("exit = %v %d, want true 3", rep.exited, rep.exitCode)
	}
	if rep.bootToUser != 2530*time.Millisecond {
		t.Errorf("boot to user = %v", rep.bootToUser)
	}
	if v, ok := rep.marks.Get("release"); !ok || v != "6.1.0-56-cloud-amd64" {
		t.Errorf("Get(release) = %q %v", v, ok)
	}
	if got := rep.marks.All("release"); len(got) != 2 {
		t.Errorf("All(release) = %q", got)
	}
	if got := rep.marks.Map()["release"]; got != "again" {
		t.Errorf("Map()[release] = %q", got)
	}
	if _, ok := rep.marks.Get("missing"); ok {
		t.Error("Get(missing) found something")
	}
}

func TestParseConsoleWithoutExit(t *testing.T) {
	rep := parseConsole(strings.NewReader("@@LAB a b\nKernel panic - not syncing\n@@LAB-EXIT x\n"))
	if rep.exited {
		t.Errorf("a console without a valid @@LAB-EXIT counts as finished")
	}
}
