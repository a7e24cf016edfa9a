//go:build linux

package install

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// sandbox runs one maintainer script the way dpkg or rpm would, as root, but
// in a private mount namespace where /var/lib, /run and /etc/systemd are
// empty tmpfs mounts, with a PATH that holds only fake systemctl,
// deb-systemd-helper, deb-systemd-invoke and smtpguard (which record their
// arguments) plus install and rm. The host's state directory, services, unit
// links and (through a real smtpguard) firewall cannot be reached; if a
// mount fails, nothing runs.
type sandbox struct {
	systemd      bool   // /run/systemd/system exists: systemd is running
	noTools      bool   // no systemctl or deb-systemd-* at all (a minimal chroot)
	wasEnabled   bool   // deb-systemd-helper was-enabled answers yes
	existing     bool   // /var/lib/smtpguard exists with a database in it
	disableFails bool   // the fake smtpguard's disable fails
	script, args string // packaging/<script> and its arguments
}

type outcome struct {
	Calls    []string // the systemd tools run, in order
	StateDir string   // "700 root" or "absent"
	Database bool     // the database in the state directory is still there
	Output   string   // the script's stdout and stderr (compared by substring)
}

func (s sandbox) run(t *testing.T) outcome {
	t.Helper()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(tmp, "calls")
	if !s.noTools {
		for _, tool := range []string{"systemctl", "deb-systemd-helper", "deb-systemd-invoke"} {
			fake := "#!/bin/sh\necho \"" + tool + " $*\" >> " + calls + "\n"
			if tool == "deb-systemd-helper" && !s.wasEnabled {
				fake += "[ \"$2\" = was-enabled ] && exit 1\n"
			}
			fake += "exit 0\n"
			if err := os.WriteFile(filepath.Join(bin, tool), []byte(fake), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tool := range []string{"install", "rm"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(path, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	script, err := filepath.Abs(filepath.Join(repoRoot, "packaging", s.script))
	if err != nil {
		t.Fatal(err)
	}
	result := filepath.Join(tmp, "result")
	setup := ""
	if s.systemd {
		setup += "mkdir -p /run/systemd/system\n"
	}
	if s.existing {
		setup += "mkdir -m 0700 /var/lib/smtpguard && : > /var/lib/smtpguard/smtpguard.db\n"
	}
	disable := `echo "SMTP restriction disabled: every user may connect to remote SMTP servers"`
	if s.disableFails {
		disable = `echo "error: opening the store: database is locked" >&2; exit 1`
	}
	fakeBinary := "#!/bin/sh\necho \"smtpguard $*\" >> " + calls + "\n[ \"$1\" = disable ] && { " + disable + "; }\nexit 0\n"
	if err := os.WriteFile(filepath.Join(bin, "smtpguard"), []byte(fakeBinary), 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := `set -eu
for d in /var/lib /run /etc/systemd; do mount -t tmpfs -o mode=0755 smtpguard-test "$d"; mountpoint -q "$d"; done
` + setup + `PATH=` + bin + ` /bin/sh ` + script + ` ` + s.args + `
if [ -d /var/lib/smtpguard ]; then stat -c '%a %U' /var/lib/smtpguard > ` + result + `; else echo absent > ` + result + `; fi
if [ -e /var/lib/smtpguard/smtpguard.db ]; then echo db >> ` + result + `; fi
`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", wrapper).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", s.script, s.args, err, out)
	}
	res, err := os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(res)), "\n")
	o := outcome{StateDir: lines[0], Database: len(lines) > 1 && lines[1] == "db", Output: string(out)}
	if b, err := os.ReadFile(calls); err == nil {
		o.Calls = strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	return o
}

// TestPrivilegedMaintainerScripts runs the packages' maintainer scripts
// through what dpkg and rpm do: first install, upgrade, install into a
// chroot without systemd, remove and purge.
func TestPrivilegedMaintainerScripts(t *testing.T) {
	testutil.Privileged(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is needed for a private mount namespace: %v", err)
	}
	const unit = "smtpguard.service"
	tests := []struct {
		name string
		sandbox
		want outcome
		say  string // what the script must tell the administrator
	}{
		{"deb: first install enables and starts the service", sandbox{systemd: true, wasEnabled: true, script: "deb/postinst", args: "configure"},
			outcome{Calls: []string{
				"deb-systemd-helper unmask " + unit, "deb-systemd-helper --quiet was-enabled " + unit, "deb-systemd-helper enable " + unit,
				"systemctl --system daemon-reload", "deb-systemd-invoke start " + unit,
			}, StateDir: "700 root"}, ""},
		{"deb: upgrade restarts, keeps the state and an administrator's disable", sandbox{systemd: true, existing: true, script: "deb/postinst", args: "configure 0.9.0-1"},
			outcome{Calls: []string{
				"deb-systemd-helper unmask " + unit, "deb-systemd-helper --quiet was-enabled " + unit, "deb-systemd-helper update-state " + unit,
				"systemctl --system daemon-reload", "deb-systemd-invoke restart " + unit,
			}, StateDir: "700 root", Database: true}, ""},
		{"deb: install into a chroot without systemd only enables", sandbox{wasEnabled: true, script: "deb/postinst", args: "configure"},
			outcome{Calls: []string{
				"deb-systemd-helper unmask " + unit, "deb-systemd-helper --quiet was-enabled " + unit, "deb-systemd-helper enable " + unit,
			}, StateDir: "700 root"}, ""},
		{"deb: install into a minimal root without any systemd tools", sandbox{noTools: true, script: "deb/postinst", args: "configure"},
			outcome{StateDir: "700 root"}, ""},
		{"deb: remove lifts the restriction, then stops the service", sandbox{systemd: true, existing: true, script: "deb/prerm", args: "remove"},
			outcome{Calls: []string{"smtpguard disable", "deb-systemd-invoke stop " + unit}, StateDir: "700 root", Database: true},
			"smtpguard: package removed, so the restriction is lifted: SMTP restriction disabled"},
		{"deb: remove still stops the service when disable fails", sandbox{systemd: true, existing: true, disableFails: true, script: "deb/prerm", args: "remove"},
			outcome{Calls: []string{"smtpguard disable", "deb-systemd-invoke stop " + unit}, StateDir: "700 root", Database: true},
			"lift them with: nft delete table inet smtpguard"},
		{"deb: remove without a database has nothing to lift", sandbox{systemd: true, script: "deb/prerm", args: "remove"},
			outcome{Calls: []string{"deb-systemd-invoke stop " + unit}, StateDir: "absent"}, ""},
		{"deb: remove in a chroot leaves the host's kernel alone", sandbox{existing: true, script: "deb/prerm", args: "remove"},
			outcome{StateDir: "700 root", Database: true}, ""},
		{"deb: upgrade does not stop it in prerm", sandbox{systemd: true, existing: true, script: "deb/prerm", args: "upgrade 1.0.0-1"},
			outcome{StateDir: "700 root", Database: true}, ""},
		{"deb: remove keeps the state", sandbox{systemd: true, existing: true, script: "deb/postrm", args: "remove"},
			outcome{Calls: []string{"systemctl --system daemon-reload", "deb-systemd-helper mask " + unit}, StateDir: "700 root", Database: true}, ""},
		{"deb: purge deletes the state", sandbox{existing: true, script: "deb/postrm", args: "purge"},
			outcome{Calls: []string{"deb-systemd-helper purge " + unit, "deb-systemd-helper unmask " + unit}, StateDir: "absent"}, ""},
		{"deb: purge without systemd tools still deletes the state", sandbox{noTools: true, existing: true, script: "deb/postrm", args: "purge"},
			outcome{StateDir: "absent"}, ""},
		{"rpm: first install enables and starts the service", sandbox{systemd: true, script: "rpm/postinst", args: "1"},
			outcome{Calls: []string{"systemctl daemon-reload", "systemctl enable " + unit, "systemctl start " + unit}, StateDir: "700 root"}, ""},
		{"rpm: upgrade restarts a running service", sandbox{systemd: true, existing: true, script: "rpm/postinst", args: "2"},
			outcome{Calls: []string{"systemctl daemon-reload", "systemctl try-restart " + unit}, StateDir: "700 root", Database: true}, ""},
		{"rpm: install into a chroot only enables", sandbox{script: "rpm/postinst", args: "1"},
			outcome{Calls: []string{"systemctl enable " + unit}, StateDir: "700 root"}, ""},
		{"rpm: erase lifts the restriction, stops and disables, keeps the state", sandbox{systemd: true, existing: true, script: "rpm/preun", args: "0"},
			outcome{Calls: []string{"smtpguard disable", "systemctl --no-reload disable --now " + unit}, StateDir: "700 root", Database: true},
			"smtpguard: package erased, so the restriction is lifted: SMTP restriction disabled"},
		{"rpm: erase in a chroot leaves the host's kernel alone", sandbox{existing: true, script: "rpm/preun", args: "0"},
			outcome{Calls: []string{"systemctl --no-reload disable " + unit}, StateDir: "700 root", Database: true}, ""},
		{"rpm: upgrade does not stop it in preun", sandbox{systemd: true, existing: true, script: "rpm/preun", args: "1"},
			outcome{StateDir: "700 root", Database: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.sandbox.run(t)
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(outcome{}, "Output")); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", tt.script, tt.args, diff)
			}
			if !strings.Contains(got.Output, tt.say) {
				t.Errorf("%s %s printed %q, want it to say %q", tt.script, tt.args, got.Output, tt.say)
			}
		})
	}
}
