package ksrc

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"
)

// Conditionals on the configuration. A header's change inside
// #ifdef CONFIG_LOCKDEP changes nothing a kernel without lockdep
// compiles: the preprocessor skips it in every unit. condLines reads a
// header's conditional lines as the preprocessor would under the
// kernel's configuration (the macros of its include/generated/autoconf.h),
// for the forms it can judge exactly: #ifdef and #ifndef of a CONFIG_
// macro, and #if or #elif of one defined(CONFIG_X), IS_ENABLED,
// IS_BUILTIN or IS_MODULE(CONFIG_X), or a bare CONFIG_X of a boolean
// option, each perhaps negated with !. Any other condition (an include
// guard, an expression, a macro of another header) is unknown: its
// text counts as read, as before, and so does every branch after it
// in its group. The judgment is conservative only: a unit that defines
// or undefines a CONFIG_ macro itself (the x86 decompressor does, and
// it is not part of vmlinux) is not seen.

// condCall is a condition of the forms condLines judges: an optional !,
// then a bare macro, defined(M), defined M, or IS_ENABLED(M),
// IS_BUILTIN(M), IS_MODULE(M).
var condCall = regexp.MustCompile(`^(!\s*)?(?:(defined|IS_ENABLED|IS_BUILTIN|IS_MODULE)\s*\(\s*(CONFIG_\w+)\s*\)|defined\s+(CONFIG_\w+)|(CONFIG_\w+))$`)

// autoconfMacros reads the macros of an autoconf.h: CONFIG_X for an
// option built in or with a value, CONFIG_X_MODULE for a module, each
// with its value.
func autoconfMacros(text []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "#define" && strings.HasPrefix(f[1], "CONFIG_") {
			out[f[1]] = strings.Join(f[2:], " ")
		}
	}
	return out
}

// tri is a condition's value: known true, known false, or unknown.
type tri int

const (
	unknown tri = iota
	yes
	no
)

// evalCond judges one condition of #if or #elif under macros.
func evalCond(cond string, macros map[string]string) tri {
	cond = strings.TrimSpace(cond)
	switch cond {
	case "0":
		return no
	case "1":
		return yes
	}
	m := condCall.FindStringSubmatch(cond)
	if m == nil {
		return unknown
	}
	neg := m[1] != ""
	var v tri
	switch name := m[3] + m[4]; {
	case m[2] == "defined" || m[4] != "":
		v = of(macros[name] != "")
	case m[2] == "IS_ENABLED":
		v = of(macros[name] == "1" || macros[name+"_MODULE"] == "1")
	case m[2] == "IS_BUILTIN":
		v = of(macros[name] == "1")
	case m[2] == "IS_MODULE":
		v = of(macros[name+"_MODULE"] == "1")
	default:
		// A bare macro is 0 when undefined, 1 for a boolean option;
		// another value is an expression this does not judge.
		switch val, ok := macros[m[5]]; {
		case !ok:
			v = no
		case val == "1":
			v = yes
		default:
			return unknown
		}
	}
	if neg {
		if v == yes {
			return no
		}
		return yes
	}
	return v
}

func of(b bool) tri {
	if b {
		return yes
	}
	return no
}

// condGroup is one #if ... #endif group being read.
type condGroup struct {
	branch tri  // the current branch's value
	taken  bool // a branch before or at this one was known true
	blind  bool // a branch's condition was unknown: later ones are too
}

// condLines returns the lines of text (numbered from 1) that the
// preprocessor skips under macros, as far as the conditionals around
// them are known, and the conditional lines whose group is known so
// far (their effect on the text is then accounted for by off). A line
// continued with a backslash makes its group unknown.
func condLines(text []byte, macros map[string]string) (off, known map[int]bool) {
	off, known = map[int]bool{}, map[int]bool{}
	if macros == nil {
		return off, known
	}
	var stack []condGroup
	skippedIn := func(groups []condGroup) bool {
		for _, g := range groups {
			if g.branch == no {
				return true
			}
		}
		return false
	}
	skipped := func() bool { return skippedIn(stack) }
	lines := bytes.Split(text, []byte("\n"))
	inComment := commentStarts(lines)
	for i := 0; i < len(lines); i++ {
		n := i + 1
		line := strings.TrimSpace(string(lines[i]))
		if inComment[i] {
			line = "" // a # there is text of a comment
		}
		continued := strings.HasSuffix(line, `\`)
		dir, rest, ok := directive(line)
		if !ok {
			if skipped() {
				off[n] = true
			}
			continue
		}
		if continued {
			// Read the whole directive as one line, unjudged.
			for i+1 < len(lines) && strings.HasSuffix(strings.TrimSpace(string(lines[i])), `\`) {
				i++
				if skipped() {
					off[i+1] = true
				}
			}
		}
		// Whether the groups around this directive's own skip it.
		outer := skipped()
		if len(stack) > 0 && (dir == "elif" || dir == "else" || dir == "endif") {
			outer = skippedIn(stack[:len(stack)-1])
		}
		switch dir {
		case "if", "ifdef", "ifndef":
			v := unknown
			if !continued {
				switch dir {
				case "if":
					v = evalCond(rest, macros)
				case "ifdef":
					v = evalCond("defined("+strings.TrimSpace(rest)+")", macros)
				case "ifndef":
					v = evalCond("!defined("+strings.TrimSpace(rest)+")", macros)
				}
			}
			stack = append(stack, condGroup{branch: v, taken: v == yes, blind: v == unknown})
		case "elif", "else":
			if len(stack) == 0 {
				return map[int]bool{}, map[int]bool{} // unbalanced: judge nothing
			}
			g := &stack[len(stack)-1]
			switch {
			case g.blind:
				g.branch = unknown
			case g.taken:
				g.branch = no
			case dir == "else":
				g.branch, g.taken = yes, true
			default:
				v := unknown
				if !continued {
					v = evalCond(rest, macros)
				}
				g.branch, g.taken, g.blind = v, v == yes, v == unknown
			}
		case "endif":
			if len(stack) == 0 {
				return map[int]bool{}, map[int]bool{}
			}
			g := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if outer {
				off[n] = true
			} else if !g.blind {
				known[n] = true
			}
			continue
		default:
			if outer {
				off[n] = true
			}
			continue
		}
		g := stack[len(stack)-1]
		switch {
		case outer:
			off[n] = true
		case !g.blind:
			known[n] = true
		}
	}
	return off, known
}

// directive splits a preprocessor line into its directive and the rest.
func directive(line string) (dir, rest string, ok bool) {
	s, ok := strings.CutPrefix(line, "#")
	if !ok {
		return "", "", false
	}
	s = strings.TrimSpace(s)
	end := strings.IndexFunc(s, func(r rune) bool { return r < 'a' || r > 'z' })
	if end < 0 {
		end = len(s)
	}
	rest = s[end:]
	if i := strings.Index(rest, "/*"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.Index(rest, "//"); i >= 0 {
		rest = rest[:i]
	}
	return s[:end], rest, true
}

// commentStarts says, for each line, whether it begins inside a block
// comment (/* ... */ across lines; // comments and string literals
// that hold a comment's marks are read as C does).
func commentStarts(lines [][]byte) []bool {
	out := make([]bool, len(lines))
	in := false
	for i, l := range lines {
		out[i] = in
		inString := false
		for j := 0; j < len(l); j++ {
			switch {
			case in:
				if l[j] == '*' && j+1 < len(l) && l[j+1] == '/' {
					in = false
					j++
				}
			case inString:
				switch l[j] {
				case '\\':
					j++
				case '"':
					inString = false
				}
			case l[j] == '"':
				inString = true
			case l[j] == '/' && j+1 < len(l) && l[j+1] == '*':
				in = true
				j++
			case l[j] == '/' && j+1 < len(l) && l[j+1] == '/':
				j = len(l)
			}
		}
	}
	return out
}
