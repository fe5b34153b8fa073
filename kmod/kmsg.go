package kmod

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
)

// parseKmsgRecord parses one /dev/kmsg record:
//
//	prio,seq,usec,flags[,more];message\n[ KEY=value\n]...
//
// prio holds the facility and the syslog level (the low 3 bits); usec is
// the time since boot. Continuation lines (dictionary entries, starting
// with a space) and fields after flags (such as caller=T1) are ignored.
// The message keeps the kernel's \xNN escapes of unprintable bytes.
func parseKmsgRecord(b []byte) (LogRecord, error) {
	head, msg, ok := bytes.Cut(b, []byte(";"))
	if !ok {
		return LogRecord{}, fmt.Errorf("kmsg record %.40q: no ';' after the header", b)
	}
	if i := bytes.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	f := bytes.Split(head, []byte(","))
	if len(f) < 4 {
		return LogRecord{}, fmt.Errorf("kmsg record %.40q: want at least 4 header fields, got %d", b, len(f))
	}
	prio, err := strconv.ParseUint(string(f[0]), 10, 32)
	if err != nil {
		return LogRecord{}, fmt.Errorf("kmsg record %.40q: bad priority %q", b, f[0])
	}
	seq, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return LogRecord{}, fmt.Errorf("kmsg record %.40q: bad sequence number %q", b, f[1])
	}
	usec, err := strconv.ParseInt(string(f[2]), 10, 64)
	if err != nil || usec < 0 {
		return LogRecord{}, fmt.Errorf("kmsg record %.40q: bad timestamp %q", b, f[2])
	}
	return LogRecord{
		Seq:      seq,
		Priority: int(prio & 7),
		Time:     time.Duration(usec) * time.Microsecond,
		Message:  string(msg),
	}, nil
}

// kmsgAfter parses raw records and keeps those with a sequence number
// above cursor. It returns them with the highest sequence number seen (or
// cursor, when none is higher). Records that do not parse are skipped: a
// log line the agent cannot read must not stop it from reading the rest.
func kmsgAfter(raw [][]byte, cursor uint64) ([]LogRecord, uint64) {
	var out []LogRecord
	next := cursor
	for _, b := range raw {
		r, err := parseKmsgRecord(b)
		if err != nil || r.Seq <= cursor {
			continue
		}
		out = append(out, r)
		next = max(next, r.Seq)
	}
	return out, next
}
