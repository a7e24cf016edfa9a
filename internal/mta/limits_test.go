package mta

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
)

func TestLimitsValidate(t *testing.T) {
	tests := []struct {
		name    string
		l       Limits
		wantErr string // "" = valid; else a substring naming field and range
	}{
		{name: "minimum", l: Limits{MaxConnections: 1}},
		{name: "maximum", l: Limits{MaxConnections: 100000, MaxPerHost: 100000, Reserve: 99999}},
		{name: "typical", l: Limits{MaxConnections: 100, MaxPerHost: 20, Reserve: 5}},
		{name: "zero max", l: Limits{}, wantErr: "max_connections must be in 1..100000, got 0"},
		{name: "negative max", l: Limits{MaxConnections: -1}, wantErr: "max_connections must be in 1..100000, got -1"},
		{name: "max too big", l: Limits{MaxConnections: 100001}, wantErr: "max_connections must be in 1..100000, got 100001"},
		{name: "per host above max", l: Limits{MaxConnections: 10, MaxPerHost: 11}, wantErr: "max_per_host must be in 0..max_connections (0..10), got 11"},
		{name: "negative per host", l: Limits{MaxConnections: 10, MaxPerHost: -1}, wantErr: "max_per_host must be in 0..max_connections (0..10), got -1"},
		{name: "reserve equal to max", l: Limits{MaxConnections: 10, Reserve: 10}, wantErr: "reserve must be in 0..max_connections-1 (0..9), got 10"},
		{name: "negative reserve", l: Limits{MaxConnections: 10, Reserve: -2}, wantErr: "reserve must be in 0..max_connections-1 (0..9), got -2"},
		{name: "reserve with max 1", l: Limits{MaxConnections: 1, Reserve: 1}, wantErr: "reserve must be in 0..max_connections-1 (0..0), got 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.l.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("%+v.Validate() = %v, want nil", tt.l, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("%+v.Validate() = %v, want %q", tt.l, err, tt.wantErr)
			}
		})
	}
}

func TestInfoJSONKeys(t *testing.T) {
	b, err := json.Marshal(Info{MTA: "none", Users: []string{}, Groups: []string{}, ListUsers: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"mta":"none","version":"","installed":false,"running":false,"users":[],"groups":[],"list_users":[],"config":"",` +
		`"limits":{"max_connections":0,"max_per_host":0,"reserve":0}}`
	if string(b) != want {
		t.Errorf("json.Marshal(Info) = %s, want %s", b, want)
	}
}

// procFixture builds a fake /proc: pid -> {comm, cmdline}.
func procFixture(t *testing.T, procs map[string][2]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "comm"), []byte(p[0]+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte(p[1]), 0o644); err != nil {
			t.Fatal(err)
		}
		stat := pid + " (" + p[0] + ") S 1 1 1 0 -1"
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Non-pid entries a real /proc has.
	if err := os.WriteFile(filepath.Join(root, "uptime"), []byte("1 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestRunning(t *testing.T) {
	proc := procFixture(t, map[string][2]string{
		"100": {"exim4", "/usr/sbin/exim4\x00-bd\x00-q30m\x00"},
		"200": {"master", "/usr/lib/postfix/sbin/master\x00-w\x00"},
		"300": {"master", "/usr/sbin/some-other-master\x00"},
		"400": {"bash", "bash\x00"},
	})
	tests := []struct {
		mta  string
		proc string
		want bool
	}{
		{"exim", proc, true},
		{"postfix", proc, true},
		{"sendmail", proc, false},
		{"exim", t.TempDir(), false},
		{"exim", filepath.Join(t.TempDir(), "missing"), false},
	}
	for _, tt := range tests {
		if got := running(tt.proc, processNames[tt.mta]); got != tt.want {
			t.Errorf("running(%s) = %v, want %v", tt.mta, got, tt.want)
		}
	}
	onlyOtherMaster := procFixture(t, map[string][2]string{"300": {"master", "/usr/sbin/some-other-master\x00"}})
	if running(onlyOtherMaster, processNames["postfix"]) {
		t.Error(`running(postfix) = true for a "master" process that is not Postfix's`)
	}
}

const groupFile = `root:x:0:
mail:x:8:
list:x:38:
Debian-exim:x:102:
postfix:x:106:
`

func directoryWithGroups(t *testing.T) *policy.Directory {
	t.Helper()
	d, err := policy.ParseDirectory(strings.NewReader(passwd), strings.NewReader(groupFile))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestNewManagerUnsupported(t *testing.T) {
	dir := directoryWithGroups(t)
	tests := []struct {
		name  string
		files []string
		want  Info
	}{
		{
			name: "nothing installed",
			want: Info{MTA: "none", Users: []string{}, Groups: []string{}, ListUsers: []string{}},
		},
		{
			name:  "sendmail with mailman",
			files: []string{"usr/lib/sm.bin/sendmail", "usr/lib/mailman/bin/mailmanctl"},
			want:  Info{MTA: "sendmail", Installed: true, Users: []string{}, Groups: []string{}, ListUsers: []string{"list"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			opts := Options{Root: fixture(t, tt.files...), ProcRoot: t.TempDir()}
			m, err := NewManager(ctx, opts, dir)
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("NewManager() error = %v, want ErrUnsupported", err)
			}
			if m == nil {
				t.Fatal("NewManager() returned a nil Manager with ErrUnsupported")
			}
			info, err := m.Info(ctx)
			if err != nil {
				t.Fatalf("Info() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, info); diff != "" {
				t.Errorf("Info() (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, BaseInfo(ctx, opts, dir)); diff != "" {
				t.Errorf("BaseInfo() (-want +got):\n%s", diff)
			}
			if _, err := m.SetLimits(ctx, Limits{MaxConnections: 10}); !errors.Is(err, ErrUnsupported) {
				t.Errorf("SetLimits() error = %v, want ErrUnsupported", err)
			}
		})
	}
}

func TestBaseInfoExim(t *testing.T) {
	opts := Options{
		Root:     fixture(t, "usr/sbin/exim4", "usr/lib/mailman/bin/mailmanctl"),
		ProcRoot: procFixture(t, map[string][2]string{"100": {"exim4", "/usr/sbin/exim4\x00-bd\x00"}}),
	}
	got := BaseInfo(context.Background(), opts, directoryWithGroups(t))
	want := Info{
		MTA: "exim", Installed: true, Running: true,
		Users:     []string{"Debian-exim", "mailnull"},
		Groups:    []string{"Debian-exim", "47"}, // mailnull's group 47 has no name here
		ListUsers: []string{"list"},
	}
	// passwd gives Debian-exim gid 102.
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("BaseInfo() (-want +got):\n%s", diff)
	}
}

func TestUnitFromCgroup(t *testing.T) {
	tests := map[string]string{
		"0::/system.slice/exim4.service\n":                             "exim4.service",
		"0::/system.slice/system-postfix.slice/postfix@-.service\n":    "postfix@-.service",
		"12:pids:/\n1:name=systemd:/system.slice/exim.service\n0::/\n": "exim.service",
		"0::/user.slice/user-0.slice/session-3.scope\n":                "",
		"0::/system.slice/ci-runner.service/job-17/exim.scope\n":       "",
		"0::/sgt-test\n": "",
		"":               "",
	}
	for in, want := range tests {
		if got := unitFromCgroup(in); got != want {
			t.Errorf("unitFromCgroup(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSystemdUnitOnlyForTheMTAsOwnUnit(t *testing.T) {
	proc := t.TempDir()
	mk := func(pid, cgroup string) {
		if err := os.MkdirAll(filepath.Join(proc, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "cgroup"), []byte(cgroup), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("10", "0::/system.slice/exim4.service\n")
	mk("20", "0::/system.slice/ci-runner.service\n") // a test's private exim
	mk("30", "0::/system.slice/exim4.service\n")     // not the unit's main pid
	systemdDir := t.TempDir()
	run := func(_ context.Context, name string, args ...string) ([]byte, error) {
		if strings.Join(args, " ") == "show --property=MainPID --value exim4.service" {
			return []byte("10\n"), nil
		}
		return nil, errors.New("unexpected " + name + " " + strings.Join(args, " "))
	}
	r := reloader{procRoot: proc, systemdDir: systemdDir, systemctl: "systemctl", run: run}
	for pid, want := range map[int]string{10: "exim4.service", 20: "", 30: ""} {
		if got := r.systemdUnit(context.Background(), pid, "exim"); got != want {
			t.Errorf("systemdUnit(%d) = %q, want %q", pid, got, want)
		}
	}
	r.systemdDir = filepath.Join(systemdDir, "missing") // not booted with systemd
	if got := r.systemdUnit(context.Background(), 10, "exim"); got != "" {
		t.Errorf("systemdUnit without systemd = %q, want \"\"", got)
	}
}

func TestProcessAlive(t *testing.T) {
	proc := t.TempDir()
	for pid, stat := range map[string]string{
		"1": "1 (exim4) S 0 1 1",
		"2": "2 (exim4) Z 1 2 2",
		"3": "3 (odd) name) R 1 3 3",
	} {
		os.MkdirAll(filepath.Join(proc, pid), 0o755)
		os.WriteFile(filepath.Join(proc, pid, "stat"), []byte(stat), 0o644)
	}
	for pid, want := range map[int]bool{1: true, 2: false, 3: true, 4: false} {
		if got := processAlive(proc, pid); got != want {
			t.Errorf("processAlive(%d) = %v, want %v", pid, got, want)
		}
	}
}

func TestReadPIDFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pid")
	os.WriteFile(good, []byte("1234\n"), 0o644)
	bad := filepath.Join(dir, "bad.pid")
	os.WriteFile(bad, []byte("x\n"), 0o644)
	if pid, err := readPIDFile(good); pid != 1234 || err != nil {
		t.Errorf("readPIDFile(good) = %d, %v; want 1234", pid, err)
	}
	if pid, err := readPIDFile(filepath.Join(dir, "missing")); pid != 0 || err != nil {
		t.Errorf("readPIDFile(missing) = %d, %v; want 0, nil", pid, err)
	}
	if _, err := readPIDFile(bad); err == nil {
		t.Error("readPIDFile(bad) = nil error")
	}
}

func TestCleanOutput(t *testing.T) {
	in := "2026-11-25 06:04:33 Warning: purging the environment.\n Suggested action: use keep_environment.\n" +
		"2026-11-25 06:04:01 Exim configuration error in line 8 of cfg:\n  \"smtp_accept_max\" option set for the second time\n"
	want := `2026-11-25 06:04:01 Exim configuration error in line 8 of cfg: / "smtp_accept_max" option set for the second time`
	if got := cleanOutput(in); got != want {
		t.Errorf("cleanOutput() = %q, want %q", got, want)
	}
}

func TestListeningInodes(t *testing.T) {
	table := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:09C5 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 590 1 0000000000000000 100 0 0 10 0\n" +
		"   1: 0100007F:09C5 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   102        0 777 1 0000000000000000 20 4 30 10 -1\n"
	got := listeningInodes([]byte(table))
	if diff := cmp.Diff(map[string]bool{"590": true}, got); diff != "" {
		t.Errorf("listeningInodes() (-want +got):\n%s", diff)
	}
}

func TestNewManagerEximWithoutWorkingBinary(t *testing.T) {
	opts := Options{Root: fixture(t, "usr/sbin/exim4"), ProcRoot: t.TempDir(), EximBinary: filepath.Join(t.TempDir(), "exim")}
	m, err := NewManager(t.Context(), opts, directoryWithGroups(t))
	if err == nil || errors.Is(err, ErrUnsupported) || m != nil {
		t.Errorf("NewManager() = %v, %v; want a nil Manager and an error other than ErrUnsupported", m, err)
	}
}
