package lab

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"time"
)

// Mark is one "@@LAB <key> <value...>" line a guest script printed.
type Mark struct {
	Key   string
	Value string
}

// Marks are a guest's marks in the order it printed them.
type Marks []Mark

// Get returns the value of the first mark with key.
func (m Marks) Get(key string) (string, bool) {
	for _, mk := range m {
		if mk.Key == key {
			return mk.Value, true
		}
	}
	return "", false
}

// All returns the values of every mark with key, in order.
func (m Marks) All(key string) []string {
	var vs []string
	for _, mk := range m {
		if mk.Key == key {
			vs = append(vs, mk.Value)
		}
	}
	return vs
}

// Map returns the marks by key; for a repeated key the last value wins.
func (m Marks) Map() map[string]string {
	out := make(map[string]string, len(m))
	for _, mk := range m {
		out[mk.Key] = mk.Value
	}
	return out
}

// consoleReport is what the lab reads from a guest's console.
type consoleReport struct {
	marks      Marks
	exitCode   int
	exited     bool
	bootToUser time.Duration
}

// Prefixes /init and lib.sh print. A marker may follow other text on
// the same console line (a kernel message without a newline), so it is
// searched for, not required at the start.
const (
	markPrefix = "@@LAB "
	exitPrefix = "@@LAB-EXIT "
	bootPrefix = "@@LAB-BOOT "
)

// parseConsole reads marks, the exit code and the boot time from a
// console transcript (with serial "\r\n" line ends).
func parseConsole(r io.Reader) consoleReport {
	var rep consoleReport
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if i := strings.Index(line, exitPrefix); i >= 0 {
			if n, err := strconv.Atoi(strings.TrimSpace(line[i+len(exitPrefix):])); err == nil {
				rep.exitCode, rep.exited = n, true
			}
			continue
		}
		if i := strings.Index(line, bootPrefix); i >= 0 {
			if s, err := strconv.ParseFloat(strings.TrimSpace(line[i+len(bootPrefix):]), 64); err == nil {
				rep.bootToUser = time.Duration(s * float64(time.Second))
			}
			continue
		}
		if i := strings.Index(line, markPrefix); i >= 0 {
			rest := strings.TrimSpace(line[i+len(markPrefix):])
			if rest == "" {
				continue
			}
			k, v, _ := strings.Cut(rest, " ")
			rep.marks = append(rep.marks, Mark{Key: k, Value: strings.TrimSpace(v)})
		}
	}
	return rep
}
