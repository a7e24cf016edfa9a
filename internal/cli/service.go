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
)

const unitName = "smtpguard.service"

// unitTemplate is the systemd unit. The daemon needs CAP_NET_ADMIN for
// nftables and netlink logging; CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN are
// kept for the eBPF backend (attaching cgroup programs). Everything else is
// locked down.
var unitTemplate = template.Must(template.New("unit").Parse(`# Written by smtpguard install-service; remove with smtpguard uninstall-service.
[Unit]
Description=smtpguard: only the mail server and allowed users may send mail directly
Documentation=https://github.com/smtpguard/smtpguard
After=network-pre.target
Wants=network-pre.target

[Service]
Type=simple
ExecStart={{.Exec}} --state-dir {{.StateDir}} serve --listen {{.Listen}}
Restart=always
RestartSec=1
CapabilityBoundingSet=CAP_NET_ADMIN CAP_BPF CAP_PERFMON CAP_SYS_ADMIN CAP_DAC_READ_SEARCH CAP_KILL
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={{.StateDir}}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
UMask=0077

[Install]
WantedBy=multi-user.target
`))

func (e *env) unitPath() string {
	dir := e.opts.UnitDir
	if dir == "" {
		dir = "/etc/systemd/system"
	}
	return filepath.Join(dir, unitName)
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
	var listen string
	var noStart bool
	cmd := &cobra.Command{
		Use:   "install-service",
		Short: "Install, enable and start the systemd unit so enforcement holds across reboots",
		Long: `Write /etc/systemd/system/smtpguard.service (running this binary's 'serve' with
this state directory), reload systemd, and enable and start the unit. Re-running
it rewrites the unit, e.g. after moving the binary.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			exe, err := e.opts.Executable()
			if err != nil {
				return fmt.Errorf("find this binary's path: %w", err)
			}
			if exe, err = filepath.Abs(exe); err != nil {
				return err
			}
			stateDir, err := filepath.Abs(e.stateDir)
			if err != nil {
				return err
			}
			for _, v := range []string{exe, stateDir, listen} {
				if strings.ContainsAny(v, " \t\n\"'\\%$") {
					return usagef("%q cannot be written into a systemd unit safely: use a path without spaces or quotes", v)
				}
			}
			var unit bytes.Buffer
			if err := unitTemplate.Execute(&unit, map[string]string{"Exec": exe, "StateDir": stateDir, "Listen": listen}); err != nil {
				return err
			}
			path := e.unitPath()
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return fmt.Errorf("create %s: %w (needs root: run with sudo)", filepath.Dir(path), err)
			}
			if err := atomicfile.Write(path, unit.Bytes(), 0o644); err != nil {
				return fmt.Errorf("%w (needs root: run with sudo)", err)
			}
			if err := e.systemctl("daemon-reload"); err != nil {
				return err
			}
			enable := []string{"enable", unitName}
			if !noStart {
				enable = []string{"enable", "--now", unitName}
			}
			if err := e.systemctl(enable...); err != nil {
				return err
			}
			fmt.Fprintf(e.stdio.Out, "installed %s and enabled it%s; check it with: systemctl status smtpguard\n", path,
				map[bool]string{true: "", false: " (started)"}[noStart])
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", DefaultListen, "address the daemon serves /metrics on")
	cmd.Flags().BoolVar(&noStart, "no-start", false, "enable for the next boot without starting now")
	return cmd
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
			if err := e.systemctl("disable", "--now", unitName); err != nil {
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
