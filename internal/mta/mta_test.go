package mta

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
)

func fixture(t *testing.T, files ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func directory(t *testing.T, passwd string) *policy.Directory {
	t.Helper()
	d, err := policy.ParseDirectory(strings.NewReader(passwd), strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const passwd = `root:x:0:0:root:/root:/bin/bash
list:x:38:38:Mailing List Manager:/var/list:/usr/sbin/nologin
Debian-exim:x:101:102::/var/spool/exim4:/usr/sbin/nologin
mailnull:x:47:47::/var/spool/mqueue:/sbin/nologin
postfix:x:105:106::/var/spool/postfix:/usr/sbin/nologin
`

func TestDetect(t *testing.T) {
	tests := []struct {
		name    string
		files   []string
		primary string
		want    []policy.SystemUser
	}{
		{name: "nothing installed: leftover accounts are not allowed", primary: "none"},
		{
			name: "debian exim4 without mailman", files: []string{"usr/sbin/exim4"}, primary: "exim",
			want: []policy.SystemUser{{Name: "Debian-exim", Reason: "MTA exim"}, {Name: "mailnull", Reason: "MTA exim"}},
		},
		{
			name: "cpanel exim with mailman", files: []string{"usr/sbin/exim", "usr/local/cpanel/3rdparty/mailman/bin/x"}, primary: "exim",
			want: []policy.SystemUser{
				{Name: "Debian-exim", Reason: "MTA exim"}, {Name: "mailnull", Reason: "MTA exim"},
				{Name: "list", Reason: "list manager mailman"},
			},
		},
		{
			name: "postfix", files: []string{"usr/sbin/postfix"}, primary: "postfix",
			want: []policy.SystemUser{{Name: "postfix", Reason: "MTA postfix"}},
		},
		{
			name: "sendmail whose account is missing", files: []string{"usr/lib/sm.bin/sendmail"}, primary: "sendmail",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Detect(context.Background(), Config{Root: fixture(t, tt.files...)}, directory(t, passwd))
			if got := d.Primary(); got != tt.primary {
				t.Errorf("Primary() = %q, want %q", got, tt.primary)
			}
			if diff := cmp.Diff(tt.want, d.SystemUsers()); diff != "" {
				t.Errorf("SystemUsers() (-want +got):\n%s", diff)
			}
		})
	}
}
