package mta

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Exim manages Exim's smtp_accept_max, smtp_accept_max_per_host and
// smtp_accept_reserve.
//
// Where the limits are written depends on the configuration in use:
//   - Debian's generated configuration (DebianEximAutoConfig, written by
//     update-exim4.conf): with the split layout smtpguard owns
//     conf.d/main/00_smtpguard_limits; otherwise the settings are edited in
//     exim4.conf.template. The configuration is then regenerated into a
//     candidate file, which replaces the live one once Exim accepts it.
//   - Any other file (RHEL's and cPanel's /etc/exim.conf, an explicit
//     EximConfig): the main section is edited directly.
//
// Either way Exim checks the candidate (exim -C candidate -bV, then -bP to
// confirm it reads the new values) before it replaces the live file.
type Exim struct {
	opts     Options
	dir      *policy.Directory
	bin      string
	config   string // the configuration file in use
	explicit bool   // config came from Options.EximConfig: pass -C to exim
	run      execer
	reloader reloader

	// editCandidate, when set, changes a candidate configuration after the
	// limits were written into it. Tests use it to make Exim refuse one.
	editCandidate func([]byte) []byte
}

// NewExim returns the manager for the Exim installation opts describe. It
// fails when the exim binary or its configuration cannot be found.
func NewExim(ctx context.Context, opts Options, dir *policy.Directory) (*Exim, error) {
	return newExim(ctx, opts, dir, commandRunner(opts.Env))
}

func newExim(ctx context.Context, opts Options, dir *policy.Directory, run execer) (*Exim, error) {
	opts = opts.withDefaults()
	m := &Exim{opts: opts, dir: dir, bin: opts.EximBinary, run: run, reloader: newReloader(opts, run)}
	if m.bin == "" {
		bin, err := lookBinary([]string{"exim4", "exim"}, "/usr/sbin", "/usr/exim/bin")
		if err != nil {
			return nil, fmt.Errorf("exim binary: %w", err)
		}
		m.bin = bin
	}
	if opts.EximConfig != "" {
		abs, err := filepath.Abs(opts.EximConfig)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("exim configuration: %w", err)
		}
		m.config, m.explicit = abs, true
		return m, nil
	}
	out, err := run(ctx, m.bin, "-bP", "configure_file")
	if err != nil {
		return nil, fmt.Errorf("asking exim for its configuration file: %w", err)
	}
	m.config = strings.TrimSpace(string(out))
	if m.config == "" {
		return nil, fmt.Errorf("exim -bP configure_file printed nothing")
	}
	return m, nil
}

// Name is part of Manager.
func (m *Exim) Name() string { return "exim" }

// Config is the configuration file in use.
func (m *Exim) Config() string { return m.config }

// configArgs select the configuration for exim: -C only when it was given
// explicitly, so that by default exim reads exactly what its daemon reads.
func (m *Exim) configArgs(args ...string) []string {
	if m.explicit {
		return append([]string{"-C", m.config}, args...)
	}
	return args
}

// Info is part of Manager.
func (m *Exim) Info(ctx context.Context) (Info, error) {
	det := Detect(ctx, Config{Root: m.opts.Root}, m.dir)
	info := baseInfo(det, "exim", m.opts.ProcRoot, m.dir)
	info.Config = m.config
	var errs []error
	// exim -bV prints its version before it reads the configuration, so a
	// broken configuration still yields the version (and an error).
	out, err := m.run(ctx, m.bin, m.configArgs("-bV")...)
	info.Version = eximVersion(out)
	if err != nil {
		errs = append(errs, err)
	}
	v, err := m.values(ctx, m.configArgs()...)
	if err != nil {
		errs = append(errs, err)
	}
	info.Limits = v.Limits
	return info, errors.Join(errs...)
}

// values asks exim for the limits in the configuration cfgArgs select.
func (m *Exim) values(ctx context.Context, cfgArgs ...string) (eximValues, error) {
	args := append(append(append([]string{}, cfgArgs...), "-bP"), eximLimitOptions...)
	out, err := m.run(ctx, m.bin, args...)
	if err != nil {
		return eximValues{}, err
	}
	return parseEximBP(out)
}

// SetLimits is part of Manager.
func (m *Exim) SetLimits(ctx context.Context, l Limits) (Limits, error) {
	if err := l.Validate(); err != nil {
		return Limits{}, err
	}
	cur, err := m.values(ctx, m.configArgs()...)
	if err != nil {
		return Limits{}, fmt.Errorf("reading exim's current limits: %w", err)
	}
	keep := l.MaxPerHost == 0 && cur.perHostExpanded()
	settings := eximSettings(l, keep)
	if filepath.Clean(m.config) == filepath.Clean(m.opts.DebianEximAutoConfig) {
		err = m.setDebian(ctx, l, cur, settings)
	} else {
		err = m.setFile(ctx, l, cur, settings)
	}
	return cur.Limits, err
}

// setFile edits the main section of the configuration file in use.
func (m *Exim) setFile(ctx context.Context, l Limits, cur eximValues, settings []eximSetting) error {
	live, err := snapshot(m.config)
	if err != nil {
		return fmt.Errorf("reading %s: %w", m.config, err)
	}
	if !live.exists {
		return fmt.Errorf("exim configuration %s does not exist", m.config)
	}
	cand, err := setEximMain(live.data, settings)
	if err != nil {
		return fmt.Errorf("editing %s: %w", m.config, err)
	}
	if m.editCandidate != nil {
		cand = m.editCandidate(cand)
	}
	tmp, err := live.writeTemp(cand)
	if err != nil {
		return err
	}
	if err := m.check(ctx, tmp, l, cur); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("exim refused the new configuration, %s is unchanged: %w", m.config, err)
	}
	if err := live.install(tmp); err != nil {
		return fmt.Errorf("installing %s: %w", m.config, err)
	}
	if err := m.reload(ctx); err != nil {
		return m.rollback(ctx, err, live)
	}
	return nil
}

// setDebian writes the limits into the sources of Debian's generated
// configuration and regenerates it with update-exim4.conf.
func (m *Exim) setDebian(ctx context.Context, l Limits, cur eximValues, settings []eximSetting) error {
	confDir := m.opts.DebianEximConfDir
	ucc := filepath.Join(confDir, "update-exim4.conf.conf")
	conf, err := os.ReadFile(ucc)
	if err != nil {
		return fmt.Errorf("debian exim configuration: %w", err)
	}
	var src fileSnapshot
	var newSrc []byte
	if debianSplitConfig(conf) {
		if src, err = snapshot(filepath.Join(confDir, "conf.d", "main", "00_smtpguard_limits")); err != nil {
			return err
		}
		newSrc = eximLimitsFile(settings)
	} else {
		if src, err = snapshot(filepath.Join(confDir, "exim4.conf.template")); err != nil {
			return err
		}
		if !src.exists {
			return fmt.Errorf("%s does not exist", src.path)
		}
		if newSrc, err = setEximMain(src.data, settings); err != nil {
			return fmt.Errorf("editing %s: %w", src.path, err)
		}
	}
	live, err := snapshot(m.config)
	if err != nil {
		return fmt.Errorf("reading %s: %w", m.config, err)
	}
	if err := src.replace(newSrc); err != nil {
		return fmt.Errorf("writing %s: %w", src.path, err)
	}
	undoSrc := func(cause error) error {
		if rerr := src.restore(); rerr != nil {
			return fmt.Errorf("%w; restoring %s failed: %v", cause, src.path, rerr)
		}
		return cause
	}

	tmp, err := m.generate(ctx, live)
	if err != nil {
		return undoSrc(err)
	}
	if err := m.check(ctx, tmp, l, cur); err != nil {
		os.Remove(tmp)
		err = fmt.Errorf("exim refused the new configuration, %s and %s are unchanged: %w", m.config, src.path, err)
		if strings.Contains(err.Error(), "set for the second time") {
			err = fmt.Errorf("%w (another file sets it too; remove that setting so smtpguard's %s is the only one)", err, src.path)
		}
		return undoSrc(err)
	}
	if err := live.install(tmp); err != nil {
		return undoSrc(fmt.Errorf("installing %s: %w", m.config, err))
	}
	if err := m.reload(ctx); err != nil {
		return m.rollback(ctx, err, src, live)
	}
	return nil
}

// generate runs update-exim4.conf into a candidate file next to the live
// one, with the live file's mode and owner, and returns the candidate.
func (m *Exim) generate(ctx context.Context, live fileSnapshot) (string, error) {
	bin := m.opts.UpdateEximConf
	if bin == "" {
		var err error
		if bin, err = lookBinary([]string{"update-exim4.conf"}, "/usr/sbin"); err != nil {
			return "", err
		}
	}
	gen, err := live.writeTemp(nil) // reserves a name; update-exim4.conf replaces it
	if err != nil {
		return "", err
	}
	defer os.Remove(gen)
	defer os.Remove(gen + ".tmp") // its own scratch file next to a /var/lib/exim4 output
	if _, err := m.run(ctx, bin, "--confdir", m.opts.DebianEximConfDir, "--output", gen); err != nil {
		return "", fmt.Errorf("generating exim's configuration: %w", err)
	}
	data, err := os.ReadFile(gen)
	if err != nil {
		return "", err
	}
	if m.editCandidate != nil {
		data = m.editCandidate(data)
	}
	return live.writeTemp(data)
}

// check has exim validate the candidate configuration and confirms exim
// reads the intended limits from it, which fails when, for example, the
// setting smtpguard wrote sits in a conditional block that is not used.
func (m *Exim) check(ctx context.Context, cand string, l Limits, cur eximValues) error {
	if _, err := m.run(ctx, m.bin, "-C", cand, "-bV"); err != nil {
		return err
	}
	got, err := m.values(ctx, "-C", cand)
	if err != nil {
		return err
	}
	keep := l.MaxPerHost == 0 && cur.perHostExpanded()
	switch {
	case got.MaxConnections != l.MaxConnections:
		return fmt.Errorf("exim reads %s = %d from it, not %d (is it set in a conditional block?)", eximMax, got.MaxConnections, l.MaxConnections)
	case got.Reserve != l.Reserve:
		return fmt.Errorf("exim reads %s = %d from it, not %d (is it set in a conditional block?)", eximReserve, got.Reserve, l.Reserve)
	case keep && got.PerHostRaw != cur.PerHostRaw:
		return fmt.Errorf("exim reads %s = %q from it, not the previous %q", eximPerHost, got.PerHostRaw, cur.PerHostRaw)
	case !keep && (got.perHostExpanded() || got.MaxPerHost != l.MaxPerHost):
		return fmt.Errorf("exim reads %s = %q from it, not %d (is it set in a conditional block?)", eximPerHost, got.PerHostRaw, l.MaxPerHost)
	}
	return nil
}

// reload makes a running Exim daemon read the new configuration: the
// Options.Reload override; systemctl reload when a systemd exim unit runs
// the daemon; otherwise SIGHUP to the pid in pid_file_path, after which Exim
// re-executes itself with the same arguments. Without a running daemon
// there is nothing to reload: the next start reads the new file.
func (m *Exim) reload(ctx context.Context) error {
	if m.opts.Reload != nil {
		return m.opts.Reload(ctx)
	}
	pid, err := m.daemonPID(ctx)
	if err != nil || pid == 0 {
		return err
	}
	if unit := m.reloader.systemdUnit(ctx, pid, "exim"); unit != "" {
		return m.reloader.reloadUnit(ctx, unit)
	}
	return m.reloader.hangupAndWait(ctx, pid)
}

// daemonPID is the pid of the running Exim daemon, from pid_file_path
// (default spool_directory/exim-daemon.pid), or 0 when none runs.
func (m *Exim) daemonPID(ctx context.Context) (int, error) {
	out, err := m.run(ctx, m.bin, m.configArgs("-bP", "pid_file_path", "spool_directory")...)
	if err != nil {
		return 0, fmt.Errorf("asking exim for its pid file: %w", err)
	}
	opts := parseNameValues(out)
	// %s in pid_file_path stands for "" for the standard daemon.
	pidFile := strings.ReplaceAll(opts["pid_file_path"], "%s", "")
	if pidFile == "" {
		pidFile = filepath.Join(opts["spool_directory"], "exim-daemon.pid")
	}
	pid, err := readPIDFile(pidFile)
	if err != nil || pid == 0 {
		return 0, err
	}
	if !processAlive(m.opts.ProcRoot, pid) || !processMatches(m.opts.ProcRoot, pid, processNames["exim"]) {
		return 0, nil // stale pid file
	}
	return pid, nil
}

// rollback restores snaps after a failed reload and reloads again so the
// daemon runs the previous configuration.
func (m *Exim) rollback(ctx context.Context, cause error, snaps ...fileSnapshot) error {
	err := fmt.Errorf("reloading exim: %w", cause)
	if rerr := restoreAll(snaps...); rerr != nil {
		return fmt.Errorf("%w; restoring the previous configuration failed: %v", err, rerr)
	}
	if rerr := m.reload(ctx); rerr != nil {
		return fmt.Errorf("%w; previous configuration restored, but reloading it failed too: %v", err, rerr)
	}
	return fmt.Errorf("%w; previous configuration restored", err)
}
