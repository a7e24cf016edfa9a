package mta

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSetMainCF(t *testing.T) {
	tests := []struct {
		name, file, value, golden string
	}{
		{name: "debian main.cf: append", file: "postfix/main.cf", value: "10", golden: "postfix/main.cf.perhost10"},
		{name: "replace a continued setting, no final newline", file: "postfix/main-limit.cf", value: "0", golden: "postfix/main-limit.cf.perhost0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := readTestdata(t, tt.file)
			got := setMainCF(src, postfixPerHost, tt.value)
			golden(t, tt.golden, got)
			if again := setMainCF(got, postfixPerHost, tt.value); string(again) != string(got) {
				t.Errorf("setMainCF is not idempotent:\n%s", cmp.Diff(string(got), string(again)))
			}
			removed, added := lineDiff(src, got)
			want := postfixPerHost + " = " + tt.value
			for _, l := range added {
				if strings.TrimSpace(l) != want {
					t.Errorf("added %q, want only %q", l, want)
				}
			}
			for _, l := range removed {
				if !strings.HasPrefix(l, postfixPerHost) && !strings.HasPrefix(l, " ") {
					t.Errorf("removed %q, which is no part of the %s setting", l, postfixPerHost)
				}
			}
		})
	}
}

func TestParseMasterCF(t *testing.T) {
	es := parseMasterCF(readTestdata(t, "postfix/master.cf"))
	if len(es) < 20 {
		t.Fatalf("parseMasterCF(master.cf) found %d services, want Debian's 20 or more", len(es))
	}
	if e := es[0]; e.Service != "smtp" || e.Type != "inet" || e.MaxProc != "-" || e.Command != "smtpd" {
		t.Errorf("first service = %+v, want smtp inet - smtpd", e)
	}
	// postconf -M folds -o options onto the service's line.
	out := "smtp       inet  n       -       y       -       -       smtpd\n" +
		"submission inet  n       -       y       -       -       smtpd -o syslog_name=postfix/submission\n"
	got := parseMasterCF([]byte(out))
	if len(got) != 2 || got[1].Service != "submission" || got[1].Command != "smtpd" {
		t.Errorf("parseMasterCF(postconf -M output) = %+v", got)
	}
}

func TestPostfixMaxConnections(t *testing.T) {
	tests := []struct {
		name, master string
		want         int
		wantErr      bool
	}{
		{name: "default process limit", master: "smtp inet n - y - - smtpd\n", want: 100},
		{name: "explicit", master: "smtp inet n - y - 30 smtpd\n", want: 30},
		{name: "address:port", master: "127.0.0.1:smtp inet n - y - 7 smtpd\n", want: 7},
		{name: "postscreen hands over to smtpd pass", master: "smtp inet n - y - 1 postscreen\nsmtpd pass - - y - 40 smtpd\n", want: 40},
		{name: "submission only", master: "submission inet n - y - - smtpd\n", wantErr: true},
		{name: "smtp client is not the server", master: "smtp unix - - y - - smtp\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := postfixMaxConnections([]byte(tt.master), "100")
			if (err != nil) != tt.wantErr {
				t.Fatalf("postfixMaxConnections() error = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("postfixMaxConnections() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestSetMasterMaxproc(t *testing.T) {
	tests := []struct {
		name, file, golden string
		wantErr            bool
	}{
		{name: "debian master.cf", file: "postfix/master.cf", golden: "postfix/master.cf.max30"},
		{name: "postscreen", file: "postfix/master-postscreen.cf", golden: "postfix/master-postscreen.cf.max30"},
		{name: "maxproc on a continuation line", file: "postfix/master-continued.cf", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := readTestdata(t, tt.file)
			got, err := setMasterMaxproc(src, 30)
			if (err != nil) != tt.wantErr {
				t.Fatalf("setMasterMaxproc() error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			golden(t, tt.golden, got)
			if again, err := setMasterMaxproc(got, 30); err != nil || string(again) != string(got) {
				t.Errorf("setMasterMaxproc is not idempotent (err %v):\n%s", err, cmp.Diff(string(got), string(again)))
			}
			if n, err := postfixMaxConnections(got, "100"); err != nil || n != 30 {
				t.Errorf("postfixMaxConnections(result) = %d, %v; want 30", n, err)
			}
			removed, added := lineDiff(src, got)
			if len(removed) != len(added) {
				t.Fatalf("changed %d lines into %d", len(removed), len(added))
			}
			for i := range removed {
				if strings.Fields(removed[i])[0] != strings.Fields(added[i])[0] || !strings.Contains(added[i], " 30 ") {
					t.Errorf("changed %q into %q, want only its maxproc set to 30", removed[i], added[i])
				}
			}
		})
	}
}
