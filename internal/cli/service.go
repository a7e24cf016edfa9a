package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/atomicfile"
	"github.com/smtpguard/smtpguard/internal/engine"
)

// UnitName is the systemd unit install-service writes.
const UnitName = "smtpguard.service"

// InstalledBinary is where packages and 'make install' put smtpguard; the
// unit names it when that is the binary being installed.
const InstalledBinary = "/usr/sbin/smtpguard"

// UnitConfig is what varies between installed units.
type UnitConfig struct {
	Exec     string // absolute path of the smtpguard binary
	StateDir string // absolute state directory (engine.DefaultStateDir)
	Listen   string // serve --listen (DefaultListen)
}

// unitTemplate is the systemd unit: Type=notify with a watchdog the
// reconcile loop feeds (internal/daemon/systemd.go), and a sandbox that
// leaves exactly what the daemon does:
//   - CAP_NET_ADMIN: nftables and the NFLOG group over netlink.
//   - CAP_NET_BIND_SERVICE: the explain responder's port (325), below 1024
//     so that no other user can listen there.
//   - MTA connection limits (mta set, the web UI's Mail server page), each
//     measured by dropping it in a booted Debian 12 (test/system):
//     CAP_SETUID and CAP_SETGID: exim -bP, run by root, calls setgroups()
//     and setuid(), postfix check runs postsuper, which does too;
//     CAP_CHOWN: update-exim4.conf and the candidate files keep the live
//     file's group (Debian-exim); CAP_DAC_READ_SEARCH: Exim's pid file
//     (/run/exim4/exim.pid, Debian-exim 0640); CAP_KILL: SIGHUP to the
//     Exim daemon, which runs as Debian-exim; CAP_SYS_PTRACE: that
//     daemon's /proc/PID/fd, whose listening sockets tell when the reload
//     is done. ReadWritePaths are the configurations it edits; Postfix
//     under systemd is reloaded by systemctl, so its spool stays read-only.
//   - The bpf backend (auto's first choice), each measured the same way,
//     on the host (test/e2e TestPrivilegedUnitCapabilitiesSufficeForBPF)
//     and under this unit in a booted Debian 12 (test/system): CAP_BPF
//     (maps, and cilium/ebpf's locked-memory check), CAP_PERFMON (the
//     verifier refuses the helpers that name the process without it),
//     CAP_NET_ADMIN (loading cgroup/connect programs, attaching them,
//     querying a cgroup's programs); not CAP_SYS_ADMIN. bpf() is not in
//     @system-service, so the filter names it. Pins are written under
//     /sys/fs/bpf: ProtectKernelTunables=yes keeps it read-only whatever
//     ReadWritePaths or BindPaths say (systemd 252), so the unit makes
//     what it covers read-only itself (ReadOnlyPaths) and /sys/fs/bpf
//     writable (ReadWritePaths, which does override ReadOnlyPaths).
//     ProtectControlGroups=no and /sys/fs/cgroup writable: the probe
//     attaches to a throwaway child cgroup it creates, which a read-only
//     cgroupfs refuses (EROFS), and auto would then never choose bpf.
//
// Everything else is read-only or hidden, so the binary must not live
// under /home, /root, /run/user, /tmp or /var/tmp (see hiddenBySandbox).
var unitTemplate = template.Must(template.New("unit").Parse(`# Written by smtpguard install-service; remove with smtpguard uninstall-service.
[Unit]
Description=smtpguard: only the mail server and allowed users may send mail directly
Documentation=https://github.com/smtpguard/smtpguard
Wants=network-pre.target
After=network-pre.target
Before=network.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={{.Exec}} --state-dir {{.StateDir}} serve --listen {{.Listen}}
Restart=on-failure
RestartSec=1
WatchdogSec=60
TimeoutStartSec=90
{{- if .Default}}
StateDirectory=smtpguard
StateDirectoryMode=0700
{{- else}}
ReadWritePaths={{.StateDir}}
{{- end}}
ReadWritePaths=-/etc/exim4 -/var/lib/exim4 -/etc/exim.conf -/etc/postfix
ReadWritePaths=-/sys/fs/bpf -/sys/fs/cgroup
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_KILL CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_BPF CAP_PERFMON
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=no
ReadOnlyPaths=/proc/sys -/proc/sysrq-trigger -/proc/irq -/proc/bus -/proc/fs /sys
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=no
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service bpf
SystemCallErrorNumber=EPERM
UMask=0077

[Install]
WantedBy=multi-user.target
`))

// hiddenBySandbox are the directories the unit's ProtectHome=yes and
// PrivateTmp=yes hide from the daemon: a binary or state directory there
// cannot be used by the service.
var hiddenBySandbox = []string{"/home", "/root", "/run/user", "/tmp", "/var/tmp"}

// hiddenDir returns the directory of hiddenBySandbox that holds path, or "".
func hiddenDir(path string) string {
	for _, d := range hiddenBySandbox {
		if path == d || strings.HasPrefix(path, d+"/") {
			return d
		}
	}
	return ""
}

// Unit renders the systemd unit for c. It fails when a value cannot be
// written into a unit safely or lies where the sandbox hides it. Packaging
// prints it with 'smtpguard install-service --print --exec /usr/sbin/smtpguard'.
func Unit(c UnitConfig) ([]byte, error) {
	if c.StateDir == "" {
		c.StateDir = engine.DefaultStateDir
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	for _, v := range []string{c.Exec, c.StateDir, c.Listen} {
		if strings.ContainsAny(v, " \t\n\"'\\%$;") {
			return nil, usagef("%q cannot be written into a systemd unit safely: use a path without spaces or quotes", v)
		}
	}
	for _, p := range []string{c.Exec, c.StateDir} {
		if !filepath.IsAbs(p) {
			return nil, usagef("%q is not an absolute path", p)
		}
	}
	if d := hiddenDir(c.StateDir); d != "" {
		return nil, usagef("state directory %s is under %s, which the service's sandbox (ProtectHome=yes, PrivateTmp=yes) hides: use one under /var/lib, e.g. the default %s", c.StateDir, d, engine.DefaultStateDir)
	}
	var unit bytes.Buffer
	err := unitTemplate.Execute(&unit, map[string]any{
		"Exec": c.Exec, "StateDir": c.StateDir, "Listen": c.Listen,
		"Default": filepath.Clean(c.StateDir) == engine.DefaultStateDir,
	})
	return unit.Bytes(), err
}

// serviceBinary is the path the unit runs: InstalledBinary or
// /usr/local/sbin/smtpguard when exe is that file, otherwise exe itself,
// which must not be where the sandbox hides it.
func serviceBinary(exe string) (string, error) {
	if fi, err := os.Stat(exe); err == nil {
		for _, p := range []string{InstalledBinary, "/usr/local/sbin/smtpguard"} {
			if pfi, err := os.Stat(p); err == nil && os.SameFile(fi, pfi) {
				return p, nil
			}
		}
	}
	resolved, err := filepath.EvalSymlinks(exe)
	if err != nil {
		resolved = exe
	}
	for _, p := range []string{exe, resolved} {
		if d := hiddenDir(p); d != "" {
			shown := exe
			if wd, err := os.Getwd(); err == nil {
				if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
					shown = rel
				}
			}
			return "", fmt.Errorf("%s is under %s, which the service's sandbox (ProtectHome=yes, PrivateTmp=yes) hides, so systemd could not start it: copy it to /usr/local/sbin first: sudo install -m 0755 %s /usr/local/sbin/ && sudo /usr/local/sbin/smtpguard install-service", p, d, shown)
		}
	}
	return exe, nil
}

func (e *env) unitPath() string {
	dir := e.opts.UnitDir
	if dir == "" {
		dir = "/etc/systemd/system"
	}
	return filepath.Join(dir, UnitName)
}

func (e *env) systemctl(args ...string) error {
	bin := e.opts.Systemctl
	if bin == "" {
		bin = "systemctl"
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func newInstallServiceCmd(e *env) *cobra.Command {
	var listen, execPath string
	var noStart, print bool
	cmd := &cobra.Command{
		Use:   "install-service",
		Short: "Install, enable and start the systemd unit so enforcement holds across reboots",
		Long: `Write /etc/systemd/system/smtpguard.service (running this binary's 'serve' with
this state directory), reload systemd, and enable and start the unit. Re-running
it rewrites the unit, e.g. after moving the binary. If systemctl fails, the
previous unit (or none) is put back.

The unit is sandboxed (ProtectHome=yes, PrivateTmp=yes, ProtectSystem=strict),
so the binary must not live under /home, /root, /tmp or /var/tmp: install it
first, e.g. sudo install -m 0755 bin/smtpguard /usr/local/sbin/.

--print writes the unit to standard output instead and changes nothing
(packaging: --print --exec /usr/sbin/smtpguard).`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			stateDir, err := filepath.Abs(e.stateDir)
			if err != nil {
				return err
			}
			bin := execPath
			if bin == "" {
				exe, err := e.opts.Executable()
				if err != nil {
					return fmt.Errorf("find this binary's path: %w", err)
				}
				if exe, err = filepath.Abs(exe); err != nil {
					return err
				}
				if bin, err = serviceBinary(exe); err != nil {
					return err
				}
			} else if !filepath.IsAbs(bin) {
				return usagef("--exec %q: want an absolute path", bin)
			}
			unit, err := Unit(UnitConfig{Exec: bin, StateDir: stateDir, Listen: listen})
			if err != nil {
				return err
			}
			if print {
				_, err := e.stdio.Out.Write(unit)
				return err
			}
			if execPath != "" {
				if _, err := serviceBinary(execPath); err != nil {
					return err
				}
			}
			path := e.unitPath()
			if err := e.writeUnit(path, unit, noStart); err != nil {
				return err
			}
			fmt.Fprintf(e.stdio.Out, "installed %s and enabled it%s; check it with: systemctl status smtpguard\n", path,
				map[bool]string{true: "", false: " (started)"}[noStart])
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", DefaultListen, "address the daemon serves the web UI, the API and /metrics on")
	cmd.Flags().BoolVar(&noStart, "no-start", false, "enable for the next boot without starting now")
	cmd.Flags().BoolVar(&print, "print", false, "print the unit on standard output; write and change nothing")
	cmd.Flags().StringVar(&execPath, "exec", "", "binary the unit runs (default: "+InstalledBinary+" when that is this binary, else this binary)")
	return cmd
}

// writeUnit installs unit at path, reloads systemd and enables (and
// starts) it. When systemctl fails, what was at path before is put back
// (or the new file removed) and systemd reloaded again.
func (e *env) writeUnit(path string, unit []byte, noStart bool) error {
	old, err := os.ReadFile(path)
	hadOld := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w (needs root: run with sudo)", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w (needs root: run with sudo)", filepath.Dir(path), err)
	}
	if err := atomicfile.Write(path, unit, 0o644); err != nil {
		return fmt.Errorf("%w (needs root: run with sudo)", err)
	}
	undo := func(cause error) error {
		what := "removed " + path + " again"
		var uerr error
		if hadOld {
			// The previous unit keeps whatever enablement it had.
			what = "put the previous " + path + " back"
			uerr = atomicfile.Write(path, old, 0o644)
		} else {
			e.systemctl("disable", UnitName) // no symlink left pointing at nothing
			uerr = os.Remove(path)
		}
		if uerr != nil {
			return fmt.Errorf("%w; undoing failed too: %v", cause, uerr)
		}
		e.systemctl("daemon-reload") // best effort: the file is back as it was
		return fmt.Errorf("%w; %s", cause, what)
	}
	if err := e.systemctl("daemon-reload"); err != nil {
		return undo(err)
	}
	enable := []string{"enable", UnitName}
	if !noStart {
		enable = []string{"enable", "--now", UnitName}
	}
	if err := e.systemctl(enable...); err != nil {
		return undo(err)
	}
	return nil
}

func newUninstallServiceCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "uninstall-service",
		Short: "Stop, disable and remove the systemd unit (the restriction itself stays as it is)",
		Long: `Stop and disable smtpguard.service and remove its unit file. The kernel rules stay
as they are: run 'smtpguard disable' as well to lift the restriction.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := e.unitPath()
			if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(e.stdio.Out, "%s is not installed; nothing to do\n", path)
				return nil
			}
			if err := e.systemctl("disable", "--now", UnitName); err != nil {
				return err
			}
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove %s: %w", path, err)
			}
			if err := e.systemctl("daemon-reload"); err != nil {
				return err
			}
			fmt.Fprintf(e.stdio.Out, "removed %s; the restriction stays %s until 'smtpguard disable'\n", path, "in force if enabled")
			return nil
		},
	}
}
