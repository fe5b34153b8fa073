package kmod

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseKmsgRecord(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    LogRecord
		wantErr string
	}{
		{
			name: "kernel info",
			in:   "6,0,0,-;Linux version 6.1.0-56-cloud-amd64\n",
			want: LogRecord{Seq: 0, Priority: 6, Message: "Linux version 6.1.0-56-cloud-amd64"},
		},
		{
			name: "facility bits are dropped",
			in:   "12,4711,2500123,-;livepatch: enabling patch 'livepatch_cmdline'\n",
			want: LogRecord{Seq: 4711, Priority: 4, Time: 2500123 * time.Microsecond, Message: "livepatch: enabling patch 'livepatch_cmdline'"},
		},
		{
			name: "continuation lines and caller field",
			in:   "3,88,1000,c,caller=T42;livepatch: failed to patch\n SUBSYSTEM=livepatch\n DEVICE=+module:lp\n",
			want: LogRecord{Seq: 88, Priority: 3, Time: time.Millisecond, Message: "livepatch: failed to patch"},
		},
		{
			name: "semicolon in the message, no final newline",
			in:   "4,9,1,-;a;b",
			want: LogRecord{Seq: 9, Priority: 4, Time: time.Microsecond, Message: "a;b"},
		},
		{
			name: "escapes are kept",
			in:   `4,10,1,-;bad byte \x01` + "\n",
			want: LogRecord{Seq: 10, Priority: 4, Time: time.Microsecond, Message: `bad byte \x01`},
		},
		{name: "empty", in: "", wantErr: "no ';'"},
		{name: "no header end", in: "6,1,2,-\n", wantErr: "no ';'"},
		{name: "short header", in: "6,1,2;x\n", wantErr: "want at least 4 header fields, got 3"},
		{name: "bad priority", in: "x,1,2,-;m\n", wantErr: `bad priority "x"`},
		{name: "bad sequence", in: "6,-1,2,-;m\n", wantErr: `bad sequence number "-1"`},
		{name: "bad time", in: "6,1,soon,-;m\n", wantErr: `bad timestamp "soon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseKmsgRecord([]byte(tt.in))
			if tt.wantErr != "" {
				wantErrContaining(t, err, "kmsg record", tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("parseKmsgRecord (-want +got):\n%s", d)
			}
		})
	}
}

func TestKmsgAfter(t *testing.T) {
	raw := [][]byte{
		[]byte("6,5,10,-;five\n"),
		[]byte("garbage"),
		[]byte("6,6,11,-;six\n"),
		[]byte("3,7,12,-;seven\n"),
	}
	got, next := kmsgAfter(raw, 5)
	want := []LogRecord{
		{Seq: 6, Priority: 6, Time: 11 * time.Microsecond, Message: "six"},
		{Seq: 7, Priority: 3, Time: 12 * time.Microsecond, Message: "seven"},
	}
	if d := cmp.Diff(want, got); d != "" || next != 7 {
		t.Errorf("kmsgAfter(5): next = %d, want 7; records (-want +got):\n%s", next, d)
	}
	got, next = kmsgAfter(raw, 7)
	if len(got) != 0 || next != 7 {
		t.Errorf("kmsgAfter(7) = %v, %d; want nothing, 7", got, next)
	}
}
