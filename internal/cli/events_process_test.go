package cli

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/store"
)

const testDockerID = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5061728394a5b6c7d8e"

// recordProcessEvents stores attempts whose process is known (as under
// bpf), one with a hostile command line, and one as nft records it.
func recordProcessEvents(t *testing.T, h *harness) {
	t.Helper()
	h.ok("status") // creates the state
	now := time.Now()
	ev := func(ago time.Duration, uid uint32, user, addr string, p store.Process) store.Event {
		at := now.Add(-ago)
		return store.Event{UID: uid, User: user, Family: 4, Address: addr, Port: 25, Action: "blocked", Count: 3, FirstSeen: at, LastSeen: at, Process: p}
	}
	if err := h.openStore().RecordEvents(context.Background(), []store.Event{
		ev(1*time.Minute, 33, "www-data", "192.0.2.25", store.Process{PID: 1234, Comm: "php-fpm8.2", Exe: "/usr/sbin/php-fpm8.2",
			Cmdline: "php-fpm: pool www", Cwd: "/home/u/public_html", Cgroup: "/system.slice/php8.2-fpm.service", Unit: "php8.2-fpm.service", Pool: "www"}),
		ev(2*time.Minute, 1001, "alice", "192.0.2.26", store.Process{PID: 4242, Comm: "sh", Exe: "/usr/bin/dash",
			Cmdline: "/bin/sh -c php /home/alice/cron.php", Cwd: "/home/alice", Cgroup: "/system.slice/cron.service", Unit: "cron.service"}),
		ev(3*time.Minute, 1001, "alice", "192.0.2.27", store.Process{PID: 5150, Comm: "python3\x1b[2J", Exe: "/usr/bin/python3.11",
			Cmdline: "python3 /home/alice/\x1b]0;owned\x07send.py", Cwd: "/home/alice", Unit: "user-1001.slice"}),
		ev(4*time.Minute, 1002, "bob", "192.0.2.28", store.Process{PID: 3001, Comm: "sendmail", Exe: "/usr/sbin/sendmail", Cmdline: "sendmail -t",
			Cgroup: "/system.slice/docker-" + testDockerID + ".scope", Unit: "docker-" + testDockerID + ".scope", Container: testDockerID}),
		ev(5*time.Minute, 1002, "bob", "192.0.2.29", store.Process{}), // nft: nothing known
	}); err != nil {
		t.Fatal(err)
	}
}

// events names each attempt's process and its source, "-" where nothing is
// known, within 80 columns, and escapes what a process could use to
// command the administrator's terminal.
func TestEventsShowProcessAndSource(t *testing.T) {
	h := newHarness(t)
	recordProcessEvents(t, h)
	out := h.ok("events")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var got []string
	for _, l := range lines {
		if strings.HasPrefix(l, "    process  ") {
			got = append(got, strings.TrimPrefix(l, "    process  "))
		}
		if !strings.HasPrefix(l, "    allow") && len(l) > 80 {
			t.Errorf("line wider than 80 columns (%d): %q", len(l), l)
		}
	}
	want := []string{
		"php-fpm8.2[1234]: pool www in /home/u/public_html",
		"sh[4242]: /home/alice/cron.php",
		`python3\x1b[2J[5150]: /home/alice/\x1b]0;owned\x07send.py`,
		"sendmail[3001]: container 3f2a9c1b7d4e",
		"-",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events process lines (-want +got):\n%s\n%s", diff, out)
	}
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("events printed a process's control characters raw:\n%q", out)
	}
	// Each row is followed by its process and the command allowing it.
	i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "192.0.2.29") && !strings.HasPrefix(l, " ") })
	if i < 0 || i+2 >= len(lines) || lines[i+1] != "    process  -" || lines[i+2] != "    allow    smtpguard allow user bob --to 192.0.2.29 --port 25" {
		t.Errorf("the nft row is not followed by its process and allow lines:\n%s", out)
	}

	wide := h.ok("events", "--wide")
	if !strings.HasPrefix(wide, "LAST SEEN") || !strings.Contains(wide, "ACTION   PROCESS") || !strings.Contains(wide, "SOURCE") || !strings.Contains(wide, "TO ALLOW JUST THIS") {
		t.Errorf("events --wide header:\n%s", wide)
	}
	for addr, want := range map[string][]string{
		"192.0.2.25": {"php-fpm8.2[1234]", "pool www in /home/u/public_html", "smtpguard allow user www-data --to 192.0.2.25 --port 25"},
		"192.0.2.28": {"sendmail[3001]", "container 3f2a9c1b7d4e", "smtpguard allow user bob --to 192.0.2.28 --port 25"},
		"192.0.2.29": {"-", "-", "smtpguard allow user bob --to 192.0.2.29 --port 25"},
	} {
		// Cells are two or more spaces apart; the source has single ones.
		cells := regexp.MustCompile(`\s{2,}`).Split(wideLine(wide, addr), -1)
		if len(cells) != 10 {
			t.Errorf("events --wide row of %s has %d cells, want 10: %q", addr, len(cells), cells)
			continue
		}
		if diff := cmp.Diff(want, cells[7:]); diff != "" {
			t.Errorf("events --wide row of %s: process, source, allow (-want +got):\n%s", addr, diff)
		}
	}
}

func wideLine(out, addr string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, addr) {
			return l
		}
	}
	return ""
}

// --unit and --container keep the attempts of one unit or container, and
// the totals count only those.
func TestEventsFilterByUnitAndContainer(t *testing.T) {
	h := newHarness(t)
	recordProcessEvents(t, h)
	for _, tt := range []struct {
		args  []string
		want  []string // destinations shown
		total string   // the totals line
	}{
		{[]string{"--unit", "cron.service"}, []string{"192.0.2.26"}, "alice 1001 3 1"},
		{[]string{"--container", testDockerID[:12]}, []string{"192.0.2.28"}, "bob 1002 3 1"},
		{[]string{"--unit", "nothing.service"}, nil, ""},
	} {
		out := h.ok(append([]string{"events"}, tt.args...)...)
		var dests []string
		var totals []string
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			switch {
			case strings.HasPrefix(l, " "):
			case len(f) == 8 && strings.HasPrefix(f[4], "192.0.2."):
				dests = append(dests, f[4])
			case len(f) == 4 && f[0] != "USER":
				totals = append(totals, strings.Join(f, " "))
			}
		}
		if diff := cmp.Diff(tt.want, dests); diff != "" {
			t.Errorf("events %v (-want +got):\n%s\n%s", tt.args, diff, out)
		}
		if tt.total != "" && !slices.Equal(totals, []string{tt.total}) {
			t.Errorf("events %v totals = %q, want %q:\n%s", tt.args, totals, tt.total, out)
		}
		if tt.want == nil && !strings.Contains(out, "no blocked attempts recorded") {
			t.Errorf("events %v with nothing matching:\n%s", tt.args, out)
		}
	}
}

// events --json keeps its keys: the process fields as stored, nothing of
// the human layout, empty where unknown.
func TestEventsJSONCarriesProcessFields(t *testing.T) {
	h := newHarness(t)
	recordProcessEvents(t, h)
	var rows []map[string]any
	if err := json.Unmarshal([]byte(h.ok("events", "--json", "--wide")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5 {
		t.Fatalf("events --json: %d rows, want 5", len(rows))
	}
	var keys []string
	for k := range rows[0] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"action", "allow_command", "blocked_by", "cgroup", "cmdline", "comm", "container", "count", "cwd", "destination",
		"exe", "family", "first_seen", "folded", "last_seen", "pid", "pool", "port", "ref", "uid", "unit", "user"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("events --json keys (-want +got):\n%s", diff)
	}
	if rows[0]["pool"] != "www" || rows[0]["pid"] != float64(1234) || rows[4]["comm"] != "" || rows[4]["pid"] != float64(0) {
		t.Errorf("events --json process fields: first %v, last %v", rows[0], rows[4])
	}
}

func TestPrintable(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"php-fpm: pool www", "php-fpm: pool www"},
		{"/home/ünï/send.py", "/home/ünï/send.py"},
		{"a\tb\nc\rd", `a\x09b\x0ac\x0dd`},
		{"\x1b[31mred\u009b", `\x1b[31mred\x9b`},
		{"raw\x9bbyte", `raw\ufffdbyte`},
		{"evil\u202egnp.php", `evil\u202egnp.php`},
		{"bad\xffutf8", `bad\ufffdutf8`},
	} {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
