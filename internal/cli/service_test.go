package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeSystemctl records its arguments, one call per line.
func fakeSystemctl(t *testing.T, dir string) (bin, log string) {
	t.Helper()
	bin, log = filepath.Join(dir, "systemctl"), filepath.Join(dir, "systemctl.log")
	script := "#!/bin/sh\necho \"$@\" >> " + log + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

func TestInstallAndUninstallService(t *testing.T) {
	h := newHarness(t)
	h.stateDir = "/srv/smtpguard" // not where the sandbox hides it; never created here
	bin, log := fakeSystemctl(t, h.dir)
	h.opts.Systemctl = bin
	h.opts.UnitDir = filepath.Join(h.dir, "units")
	h.opts.Executable = func() (string, error) { return "/usr/local/sbin/smtpguard", nil }

	out := h.ok("install-service")
	if !strings.Contains(out, "smtpguard.service") {
		t.Errorf("install-service printed %q", out)
	}
	unit, err := os.ReadFile(filepath.Join(h.opts.UnitDir, "smtpguard.service"))
	if err != nil {
		t.Fatalf("unit not written: %v", err)
	}
	for _, want := range []string{
		"ExecStart=/usr/local/sbin/smtpguard --state-dir " + h.stateDir + " serve --listen 127.0.0.1:9725",
		"After=network-pre.target", "Restart=on-failure", "Type=notify", "NotifyAccess=main", "WatchdogSec=",
		"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_KILL ", "ProtectSystem=strict", "ReadWritePaths=" + h.stateDir,
		"ReadWritePaths=-/etc/exim4 -/var/lib/exim4 -/etc/exim.conf -/etc/postfix", "WantedBy=multi-user.target",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	calls, _ := os.ReadFile(log)
	if got, want := string(calls), "daemon-reload\nenable --now smtpguard.service\n"; got != want {
		t.Errorf("systemctl calls = %q, want %q", got, want)
	}

	os.Remove(log)
	h.ok("uninstall-service")
	if _, err := os.Stat(filepath.Join(h.opts.UnitDir, "smtpguard.service")); !os.IsNotExist(err) {
		t.Errorf("unit still present after uninstall-service: %v", err)
	}
	calls, _ = os.ReadFile(log)
	if got, want := string(calls), "disable --now smtpguard.service\ndaemon-reload\n"; got != want {
		t.Errorf("systemctl calls = %q, want %q", got, want)
	}
	if out := h.ok("uninstall-service"); !strings.Contains(out, "nothing to do") {
		t.Errorf("second uninstall-service printed %q", out)
	}
}

func TestInstallServiceRefusesUnsafePathsAndReportsSystemctlFailure(t *testing.T) {
	h := newHarness(t)
	h.opts.UnitDir = filepath.Join(h.dir, "units")
	h.opts.Executable = func() (string, error) { return "/opt/my tools/smtpguard", nil }
	if r := h.run("install-service"); r.code != ExitUsage || !strings.Contains(r.stderr, "cannot be written into a systemd unit") {
		t.Errorf("unsafe path: exit %d, %q", r.code, r.stderr)
	}
	h.opts.Executable = func() (string, error) { return "/usr/sbin/smtpguard", nil }
	h.stateDir = "/var/lib/smtpguard"
	h.opts.Systemctl = "/bin/false"
	if r := h.run("install-service"); r.code != ExitFailure || !strings.Contains(r.stderr, "systemctl daemon-reload") {
		t.Errorf("failing systemctl: exit %d, %q", r.code, r.stderr)
	}
}

// A binary under a directory the sandbox hides could never start: refused,
// with the fix, and nothing written.
func TestInstallServiceRefusesBinaryTheSandboxHides(t *testing.T) {
	for _, exe := range []string{"/home/alice/smtpguard/bin/smtpguard", "/root/go/bin/smtpguard", "/tmp/smtpguard", "/var/tmp/build/smtpguard", "/run/user/1000/smtpguard"} {
		t.Run(exe, func(t *testing.T) {
			h := newHarness(t)
			h.stateDir = "/var/lib/smtpguard"
			bin, log := fakeSystemctl(t, h.dir)
			h.opts.Systemctl = bin
			h.opts.UnitDir = filepath.Join(h.dir, "units")
			h.opts.Executable = func() (string, error) { return exe, nil }
			r := h.run("install-service")
			if r.code != ExitFailure || !strings.Contains(r.stderr, "copy it to /usr/local/sbin first: sudo install -m 0755 "+exe+" /usr/local/sbin/") {
				t.Errorf("install-service from %s: exit %d, stderr %q; want exit 1 and the copy command", exe, r.code, r.stderr)
			}
			if _, err := os.Stat(filepath.Join(h.opts.UnitDir, UnitName)); !os.IsNotExist(err) {
				t.Errorf("unit written for a binary it cannot run: %v", err)
			}
			if calls, _ := os.ReadFile(log); len(calls) > 0 {
				t.Errorf("systemctl called: %q", calls)
			}
		})
	}
	t.Run("state directory", func(t *testing.T) {
		h := newHarness(t) // its state directory is under t.TempDir(), in /tmp
		h.opts.UnitDir = filepath.Join(h.dir, "units")
		h.opts.Executable = func() (string, error) { return "/usr/sbin/smtpguard", nil }
		if !strings.HasPrefix(h.stateDir, "/tmp/") {
			t.Skipf("TMPDIR is not /tmp: %s", h.stateDir)
		}
		if r := h.run("install-service"); r.code != ExitUsage || !strings.Contains(r.stderr, "sandbox") {
			t.Errorf("state dir in /tmp: exit %d, %q", r.code, r.stderr)
		}
	})
}

// failingSystemctl succeeds except for the command containing fail.
func failingSystemctl(t *testing.T, dir, fail string) (bin, log string) {
	t.Helper()
	bin, log = filepath.Join(dir, "systemctl"), filepath.Join(dir, "systemctl.log")
	script := "#!/bin/sh\necho \"$@\" >> " + log + "\ncase \"$*\" in *'" + fail + "'*) echo 'Job failed' >&2; exit 1;; esac\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

// When systemctl fails the unit directory is left as it was: no new unit,
// or the previous one byte for byte.
func TestInstallServiceUndoesWhenSystemctlFails(t *testing.T) {
	for _, tc := range []struct {
		name, fail, previous string
	}{
		{"enable fails, no previous unit", "enable", ""},
		{"daemon-reload fails, no previous unit", "daemon-reload", ""},
		{"enable fails, previous unit", "enable", "# an older smtpguard unit\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.stateDir = "/var/lib/smtpguard"
			bin, log := failingSystemctl(t, h.dir, tc.fail)
			h.opts.Systemctl = bin
			h.opts.UnitDir = filepath.Join(h.dir, "units")
			h.opts.Executable = func() (string, error) { return "/usr/sbin/smtpguard", nil }
			path := filepath.Join(h.opts.UnitDir, UnitName)
			if tc.previous != "" {
				os.MkdirAll(h.opts.UnitDir, 0o755)
				if err := os.WriteFile(path, []byte(tc.previous), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := h.run("install-service")
			if r.code != ExitFailure || !strings.Contains(r.stderr, "systemctl "+tc.fail) {
				t.Errorf("exit %d, stderr %q; want exit 1 naming systemctl %s", r.code, r.stderr, tc.fail)
			}
			got, err := os.ReadFile(path)
			switch {
			case tc.previous == "" && !os.IsNotExist(err):
				t.Errorf("unit left behind after systemctl failed: %v %q", err, got)
			case tc.previous != "" && string(got) != tc.previous:
				t.Errorf("previous unit not restored: %q, %v", got, err)
			}
			calls, _ := os.ReadFile(log)
			if last := strings.Split(strings.TrimSpace(string(calls)), "\n"); last[len(last)-1] != "daemon-reload" {
				t.Errorf("systemctl calls %q: want a daemon-reload after undoing", calls)
			}
		})
	}
}

// --print writes the unit install-service would write, and nothing else.
func TestInstallServicePrint(t *testing.T) {
	h := newHarness(t)
	h.stateDir = "/var/lib/smtpguard"
	h.opts.UnitDir = filepath.Join(h.dir, "units")
	h.opts.Systemctl = "/bin/false"
	out := h.ok("install-service", "--print", "--exec", "/usr/sbin/smtpguard")
	want, err := Unit(UnitConfig{Exec: "/usr/sbin/smtpguard", StateDir: "/var/lib/smtpguard", Listen: DefaultListen})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), out); diff != "" {
		t.Errorf("--print (-want +got):\n%s", diff)
	}
	for _, line := range []string{"ExecStart=/usr/sbin/smtpguard --state-dir /var/lib/smtpguard serve --listen 127.0.0.1:9725", "StateDirectory=smtpguard", "StateDirectoryMode=0700"} {
		if !strings.Contains(out, "\n"+line+"\n") {
			t.Errorf("default unit lacks %q:\n%s", line, out)
		}
	}
	if strings.Contains(out, "ReadWritePaths=/var/lib/smtpguard") {
		t.Errorf("default unit has a stray ReadWritePaths:\n%s", out)
	}
	// What the bpf backend needs under the sandbox, each measured by
	// dropping it (see unitTemplate): loading needs CAP_BPF (maps, and the
	// locked-memory check) and CAP_PERFMON (the helpers naming the
	// process), attaching and querying cgroups CAP_NET_ADMIN; pins are
	// written under /sys/fs/bpf; bpf() is not in @system-service.
	for _, line := range []string{
		"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_KILL CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_BPF CAP_PERFMON",
		"ReadWritePaths=-/sys/fs/bpf -/sys/fs/cgroup",
		"SystemCallFilter=@system-service bpf",
		"ProtectControlGroups=no",                                                                                       // the probe's throwaway child cgroup
		"ProtectKernelTunables=no", "ReadOnlyPaths=/proc/sys -/proc/sysrq-trigger -/proc/irq -/proc/bus -/proc/fs /sys", // but /sys/fs/bpf writable
	} {
		if !strings.Contains(out, "\n"+line+"\n") {
			t.Errorf("default unit lacks %q, which the bpf backend needs:\n%s", line, out)
		}
	}
	if _, err := os.Stat(h.opts.UnitDir); !os.IsNotExist(err) {
		t.Errorf("--print wrote something: %v", err)
	}
}

// systemd itself accepts the unit: systemd-analyze verify prints nothing.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd)")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "smtpguard") // verify checks ExecStart's binary exists
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, stateDir := range []string{"/var/lib/smtpguard", "/srv/smtpguard"} {
		unit, err := Unit(UnitConfig{Exec: exe, StateDir: stateDir})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, UnitName)
		if err := os.WriteFile(path, unit, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", path).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify (state dir %s): %v\n%s\nunit:\n%s", stateDir, err, out, unit)
		}
	}
}
