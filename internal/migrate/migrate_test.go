package migrate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// csfConf is the shape of a real csf.conf: comments, quoted values, other
// settings around the SMTP ones.
const csfConf = `###############################################################################
# SECTION:SMTP Settings
###############################################################################
# Block outgoing SMTP except for root, exim and mailman (forces scripts/users
# to use the exim/sendmail binary instead of sockets access). This replaces the
# protection as WHM > Tweak Settings > SMTP Tweaks
SMTP_BLOCK = "1"

# If SMTP_BLOCK is enabled but you want to allow local connections to port 25
# on the server (e.g. for webmail or web scripts) then enable this option to
# allow outgoing SMTP connections to the loopback device
SMTP_ALLOWLOCAL = "1"

# This option redirects outgoing SMTP connections destined for remote servers
# for non-bypass users to the local SMTP server
SMTP_REDIRECT = "0"

# This is a comma separated list of the ports to block.
SMTP_PORTS = "25,465,587"

# Always allow the following comma separated users and groups to bypass
# SMTP_BLOCK
SMTP_ALLOWUSER = "wpmailer, newsletter"
SMTP_ALLOWGROUP = "mail,mailman"
TCP_IN = "20,21,22,25,53"
IPV6 = "1"
`

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCSF(t *testing.T) {
	tests := []struct {
		name string
		conf string
		want policy.File
		note string // a note that must be there
	}{
		{"enabled with users and groups", csfConf, policy.File{
			Version: 1, Enabled: true, Backend: "auto", Mode: "reject", Ports: []int{25, 465, 587}, AllowLocal: true,
			AllowedUsers: []string{"wpmailer", "newsletter"}, AllowedGroups: []string{"mail", "mailman"},
		}, "IPv4 and IPv6"},
		{"disabled, local off, redirect, a range", `SMTP_BLOCK = "0"
SMTP_ALLOWLOCAL = "0"
SMTP_REDIRECT = "1" # to exim
SMTP_PORTS = "25,2525:2526"
`, policy.File{
			Version: 1, Enabled: false, Backend: "auto", Mode: "redirect", Ports: []int{25, 2525, 2526}, AllowLocal: false,
			AllowedUsers: []string{}, AllowedGroups: []string{},
		}, "SMTP_REDIRECT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := CSF(write(t, t.TempDir(), "csf.conf", tt.conf))
			if err != nil {
				t.Fatalf("CSF() error: %v", err)
			}
			if diff := cmp.Diff(tt.want, r.File); diff != "" {
				t.Errorf("CSF() file (-want +got):\n%s", diff)
			}
			if !containsNote(r.Notes, tt.note) {
				t.Errorf("CSF() notes = %q, want one mentioning %q", r.Notes, tt.note)
			}
		})
	}
}

func TestCSFErrorsNameTheProblemNotTheContents(t *testing.T) {
	tests := []struct{ name, conf, want string }{
		{"not csf.conf", "root:$6$secrethash:19000:0:99999:7:::\n", "line 1"},
		{"no SMTP_BLOCK", "TCP_IN = \"22\"\n", "no SMTP_BLOCK"},
		{"bad port", "SMTP_BLOCK = \"1\"\nSMTP_PORTS = \"25,smtp\"\n", "SMTP_PORTS"},
		{"unterminated quote", "SMTP_BLOCK = \"1\nX = 2\n", "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CSF(write(t, t.TempDir(), "csf.conf", tt.conf))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CSF() error = %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secrethash") {
				t.Errorf("CSF() error %q echoes the file's contents", err)
			}
		})
	}
}

func TestCPanel(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		enabled bool
		users   []string
		groups  []string
		note    string
	}{
		{"enabled by the tweak", map[string]string{
			"var/cpanel/cpanel.config":    "maxemailsperhour=200\nsmtpmailgidonly=1\n",
			"var/cpanel/smtpgidonlytweak": "",
		}, true, []string{}, []string{}, "Mailman"},
		{"disabled", map[string]string{"var/cpanel/cpanel.config": "smtpmailgidonly=0\n"}, false, []string{}, []string{}, "Mailman"},
		{"config and flag disagree: the flag wins", map[string]string{
			"var/cpanel/cpanel.config": "smtpmailgidonly=1\n",
		}, false, []string{}, []string{}, "flag file"},
		{"conf.yaml allows more", map[string]string{
			"var/cpanel/smtpgidonlytweak":          "",
			"var/cpanel/smtpmailgidonly/conf.yaml": "---\nallowed_users:\n  - wpmailer\nallowed_groups: [agency]\nlogging: 1\n",
		}, true, []string{"wpmailer"}, []string{"agency"}, `"logging"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tt.files {
				write(t, root, name, content)
			}
			r, err := CPanel(root)
			if err != nil {
				t.Fatalf("CPanel(%s) error: %v", root, err)
			}
			want := policy.File{Version: 1, Enabled: tt.enabled, Backend: "auto", Mode: "reject", Ports: []int{25, 465, 587},
				AllowLocal: true, AllowedUsers: tt.users, AllowedGroups: tt.groups}
			if diff := cmp.Diff(want, r.File); diff != "" {
				t.Errorf("CPanel() file (-want +got):\n%s", diff)
			}
			if !containsNote(r.Notes, tt.note) {
				t.Errorf("CPanel() notes = %q, want one mentioning %q", r.Notes, tt.note)
			}
		})
	}
	if _, err := CPanel(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no cPanel configuration") {
		t.Errorf("CPanel(empty root) error = %v, want 'no cPanel configuration'", err)
	}
}

func TestImunify(t *testing.T) {
	const agentJSON = `{"items": {"FIREWALL": {"TCP_IN_IPv4": ["22"]}, "SMTP_BLOCKING": {
	  "allow_groups": ["mail"], "allow_local": false, "allow_users": ["wpmailer"],
	  "enable": true, "ports": [25, 587, 465], "redirect": true}}}`
	r, err := Imunify(write(t, t.TempDir(), "im.json", agentJSON))
	if err != nil {
		t.Fatalf("Imunify() error: %v", err)
	}
	want := policy.File{Version: 1, Enabled: true, Backend: "auto", Mode: "redirect", Ports: []int{25, 587, 465},
		AllowLocal: false, AllowedUsers: []string{"wpmailer"}, AllowedGroups: []string{"mail"}}
	if diff := cmp.Diff(want, r.File); diff != "" {
		t.Errorf("Imunify() file (-want +got):\n%s", diff)
	}
	for _, bad := range []struct{ name, json, want string }{
		{"not JSON", "password: hunter2\n", "not JSON"},
		{"no section", `{"items": {}}`, "no SMTP_BLOCKING.enable"},
		{"bad port", `{"SMTP_BLOCKING": {"enable": true, "ports": [70000]}}`, "70000 is not a port"},
	} {
		_, err := Imunify(write(t, t.TempDir(), "im.json", bad.json))
		if err == nil || !strings.Contains(err.Error(), bad.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: Imunify() error = %v, want one containing %q and none of the file", bad.name, err, bad.want)
		}
	}
}

func TestUnknownAndDropUnknown(t *testing.T) {
	dir, err := policy.ParseDirectory(strings.NewReader("root:x:0:0::/:/bin/sh\nalice:x:1001:1001::/:/bin/sh\n"),
		strings.NewReader("root:x:0:\nmail:x:8:\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := policy.File{AllowedUsers: []string{"alice", "ghost"}, AllowedGroups: []string{"mail", "agency", "staff"}}
	if got, want := Unknown(f, dir), []string{"user ghost", "group agency", "group staff"}; !cmp.Equal(got, want) {
		t.Errorf("Unknown() = %q, want %q", got, want)
	}
	dropped := DropUnknown(&f, dir)
	if want := []string{"user ghost", "group agency", "group staff"}; !cmp.Equal(dropped, want) {
		t.Errorf("DropUnknown() = %q, want %q", dropped, want)
	}
	if !cmp.Equal(f.AllowedUsers, []string{"alice"}) || !cmp.Equal(f.AllowedGroups, []string{"mail"}) {
		t.Errorf("after DropUnknown: users %q groups %q, want [alice] [mail]", f.AllowedUsers, f.AllowedGroups)
	}
}

func containsNote(notes []string, s string) bool {
	for _, n := range notes {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}
