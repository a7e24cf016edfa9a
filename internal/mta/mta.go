// Package mta detects the mail transfer agent and the mailing-list manager on
// this host, and the system accounts they send mail as. Those accounts must keep
// reaching remote SMTP servers, or the restriction would stop the server's own
// mail. Detection looks at installed files, not running processes: the MTA's
// users stay allowed while it is installed, whether or not it runs right now.
//
// A Manager (NewManager) reads and sets the MTA's limits on simultaneous
// incoming SMTP connections: Exim's smtp_accept_max, smtp_accept_max_per_host
// and smtp_accept_reserve, or Postfix's smtpd process limit and
// smtpd_client_connection_count_limit. The MTA validates every candidate
// configuration before it replaces the live one, and any failure, up to and
// including the reload, restores the previous files byte for byte.
package mta

import (
	"context"
	"os"
	"path/filepath"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// software describes one kind of MTA or list manager.
type software struct {
	name  string
	files []string // any of these existing means installed
	users []string // accounts it sends as, those present are allowed
}

// Known MTAs, best known first. Paths cover Debian's and RHEL/cPanel's layouts.
var knownMTAs = []software{
	{"exim", []string{"usr/sbin/exim4", "usr/sbin/exim", "usr/exim/bin/exim"}, []string{"Debian-exim", "mailnull", "exim"}},
	{"postfix", []string{"usr/sbin/postfix", "usr/lib/postfix/sbin/master", "usr/libexec/postfix/master"}, []string{"postfix"}},
	{"sendmail", []string{"usr/lib/sm.bin/sendmail", "usr/sbin/sendmail.sendmail"}, []string{"smmsp"}},
	{"opensmtpd", []string{"usr/sbin/smtpd", "usr/local/sbin/smtpd"}, []string{"opensmtpd", "_smtpd", "_smtpq", "smtpd", "smtpq"}},
}

// Known list managers. Debian's mailman runs as "list", others as "mailman".
var knownListManagers = []software{
	{"mailman", []string{
		"usr/lib/mailman/bin/mailmanctl", "usr/lib/mailman3", "usr/bin/mailman", "usr/sbin/mailman",
		"usr/local/cpanel/3rdparty/mailman", "usr/local/mailman/bin/mailmanctl",
	}, []string{"list", "mailman"}},
}

// Config says where to look; tests point Root at a fixture tree.
type Config struct {
	Root string // file system root, "/" normally
}

// Found is one detected package.
type Found struct {
	Name  string   `json:"name"`
	Path  string   `json:"path"`  // the file that proved it installed
	Users []string `json:"users"` // its accounts that exist on this host
}

// Detection is what was found on the host.
type Detection struct {
	MTAs         []Found `json:"mtas"`
	ListManagers []Found `json:"list_managers"`
}

// Primary is the name of the first MTA found, or "none".
func (d Detection) Primary() string {
	if len(d.MTAs) == 0 {
		return "none"
	}
	return d.MTAs[0].Name
}

// Detect looks for installed MTAs and list managers and their accounts.
func Detect(ctx context.Context, cfg Config, dir *policy.Directory) Detection {
	root := cfg.Root
	if root == "" {
		root = "/"
	}
	return Detection{
		MTAs:         find(root, knownMTAs, dir),
		ListManagers: find(root, knownListManagers, dir),
	}
}

func find(root string, known []software, dir *policy.Directory) []Found {
	var out []Found
	for _, sw := range known {
		path, ok := firstExisting(root, sw.files)
		if !ok {
			continue
		}
		f := Found{Name: sw.name, Path: "/" + path, Users: []string{}}
		for _, u := range sw.users {
			if _, ok := dir.User(u); ok {
				f.Users = append(f.Users, u)
			}
		}
		out = append(out, f)
	}
	return out
}

func firstExisting(root string, files []string) (string, bool) {
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			return f, true
		}
	}
	return "", false
}

// SystemUsers are the accounts smtpguard allows on its own account.
func (d Detection) SystemUsers() []policy.SystemUser {
	var out []policy.SystemUser
	for _, f := range d.MTAs {
		for _, u := range f.Users {
			out = append(out, policy.SystemUser{Name: u, Reason: "MTA " + f.Name})
		}
	}
	for _, f := range d.ListManagers {
		for _, u := range f.Users {
			out = append(out, policy.SystemUser{Name: u, Reason: "list manager " + f.Name})
		}
	}
	return out
}
