package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		"After=network-pre.target", "Restart=always", "CapabilityBoundingSet=CAP_NET_ADMIN CAP_BPF",
		"ProtectSystem=strict", "ReadWritePaths=" + h.stateDir, "WantedBy=multi-user.target",
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
	h.opts.Systemctl = "/bin/false"
	if r := h.run("install-service"); r.code != ExitFailure || !strings.Contains(r.stderr, "systemctl daemon-reload") {
		t.Errorf("failing systemctl: exit %d, %q", r.code, r.stderr)
	}
}
