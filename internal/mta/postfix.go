package mta

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Postfix manages Postfix's equivalents of Exim's limits: the process limit
// (master.cf maxproc) of the smtpd serving port 25 as MaxConnections and
// smtpd_client_connection_count_limit as MaxPerHost. Postfix has no
// reserved slots, so Reserve is always 0.
//
// main.cf and master.cf are edited by pure transforms (setMainCF,
// setMasterMaxproc) that change only the affected lines. Postfix parses the
// candidates in a scratch directory (postconf -c) and must report the new
// values before they replace the live files; then `postfix check` runs
// against the live directory, and the MTA is reloaded. Any failure restores
// both files byte for byte.
type Postfix struct {
	opts      Options
	dir       *policy.Directory
	postconf  string
	postfix   string
	configDir string
	run       execer
	reloader  reloader
}

// NewPostfix returns the manager for the Postfix installation opts describe.
func NewPostfix(ctx context.Context, opts Options, dir *policy.Directory) (*Postfix, error) {
	return newPostfix(ctx, opts, dir, commandRunner(opts.Env))
}

func newPostfix(ctx context.Context, opts Options, dir *policy.Directory, run execer) (*Postfix, error) {
	opts = opts.withDefaults()
	m := &Postfix{opts: opts, dir: dir, postconf: opts.PostconfBinary, postfix: opts.PostfixBinary, run: run, reloader: newReloader(opts, run)}
	var err error
	if m.postconf == "" {
		if m.postconf, err = lookBinary([]string{"postconf"}, "/usr/sbin"); err != nil {
			return nil, fmt.Errorf("postfix: %w", err)
		}
	}
	if m.postfix == "" {
		if m.postfix, err = lookBinary([]string{"postfix"}, "/usr/sbin"); err != nil {
			return nil, fmt.Errorf("postfix: %w", err)
		}
	}
	m.configDir = opts.PostfixConfigDir
	if m.configDir == "" {
		out, err := run(ctx, m.postconf, "-h", "config_directory")
		if err != nil {
			return nil, fmt.Errorf("asking postconf for config_directory: %w", err)
		}
		m.configDir = strings.TrimSpace(string(out))
	}
	if m.configDir, err = filepath.Abs(m.configDir); err != nil {
		return nil, err
	}
	return m, nil
}

// Name is part of Manager.
func (m *Postfix) Name() string { return "postfix" }

// Info is part of Manager. Config is the configuration directory.
func (m *Postfix) Info(ctx context.Context) (Info, error) {
	det := Detect(ctx, Config{Root: m.opts.Root}, m.dir)
	info := baseInfo(det, "postfix", m.opts.ProcRoot, m.dir)
	info.Config = m.configDir
	var errs []error
	out, err := m.run(ctx, m.postconf, "-c", m.configDir, "-h", "mail_version")
	if err != nil {
		errs = append(errs, err)
	}
	info.Version = strings.TrimSpace(string(out))
	info.Limits, err = m.values(ctx, m.configDir)
	if err != nil {
		errs = append(errs, err)
	}
	return info, errors.Join(errs...)
}

// values asks postconf for the limits in configuration directory dir.
func (m *Postfix) values(ctx context.Context, dir string) (Limits, error) {
	out, err := m.run(ctx, m.postconf, "-c", dir, "-x", postfixPerHost, "default_process_limit")
	if err != nil {
		return Limits{}, err
	}
	p := parseNameValues(out)
	perHost, err := strconv.Atoi(p[postfixPerHost])
	if err != nil {
		return Limits{}, fmt.Errorf("postconf %s: not a number: %q", postfixPerHost, p[postfixPerHost])
	}
	master, err := m.run(ctx, m.postconf, "-c", dir, "-M")
	if err != nil {
		return Limits{}, err
	}
	maxConn, err := postfixMaxConnections(master, p["default_process_limit"])
	if err != nil {
		return Limits{}, fmt.Errorf("postconf -M: %w", err)
	}
	return Limits{MaxConnections: maxConn, MaxPerHost: perHost}, nil
}

// SetLimits is part of Manager.
func (m *Postfix) SetLimits(ctx context.Context, l Limits) (Limits, error) {
	if err := l.Validate(); err != nil {
		return Limits{}, err
	}
	if l.Reserve != 0 {
		return Limits{}, fmt.Errorf("reserve must be 0 for postfix, which has no reserved connection slots, got %d", l.Reserve)
	}
	before, err := m.values(ctx, m.configDir)
	if err != nil {
		return Limits{}, fmt.Errorf("reading postfix's current limits: %w", err)
	}
	return before, m.set(ctx, l)
}

func (m *Postfix) set(ctx context.Context, l Limits) error {
	mainCF, err := snapshot(filepath.Join(m.configDir, "main.cf"))
	if err != nil {
		return err
	}
	masterCF, err := snapshot(filepath.Join(m.configDir, "master.cf"))
	if err != nil {
		return err
	}
	if !mainCF.exists || !masterCF.exists {
		return fmt.Errorf("postfix configuration %s lacks main.cf or master.cf", m.configDir)
	}
	newMain := setMainCF(mainCF.data, postfixPerHost, strconv.Itoa(l.MaxPerHost))
	newMaster, err := setMasterMaxproc(masterCF.data, l.MaxConnections)
	if err != nil {
		return fmt.Errorf("editing %s: %w", masterCF.path, err)
	}
	if err := m.checkCandidate(ctx, newMain, newMaster, l); err != nil {
		return fmt.Errorf("postfix refused the new configuration, %s is unchanged: %w", m.configDir, err)
	}

	// The two files cannot be replaced in one step; each replacement is
	// atomic and both are undone on failure.
	if err := mainCF.replace(newMain); err != nil {
		return fmt.Errorf("writing %s: %w", mainCF.path, err)
	}
	if err := masterCF.replace(newMaster); err != nil {
		return m.undo(fmt.Errorf("writing %s: %w", masterCF.path, err), mainCF, masterCF)
	}
	if _, err := m.run(ctx, m.postfix, "-c", m.configDir, "check"); err != nil {
		return m.undo(fmt.Errorf("postfix check: %w", err), mainCF, masterCF)
	}
	if err := m.reload(ctx); err != nil {
		err = fmt.Errorf("reloading postfix: %w", err)
		if rerr := restoreAll(mainCF, masterCF); rerr != nil {
			return fmt.Errorf("%w; restoring the previous configuration failed: %v", err, rerr)
		}
		if rerr := m.reload(ctx); rerr != nil {
			return fmt.Errorf("%w; previous configuration restored, but reloading it failed too: %v", err, rerr)
		}
		return fmt.Errorf("%w; previous configuration restored", err)
	}
	return nil
}

func (m *Postfix) undo(cause error, snaps ...fileSnapshot) error {
	if rerr := restoreAll(snaps...); rerr != nil {
		return fmt.Errorf("%w; restoring the previous configuration failed: %v", cause, rerr)
	}
	return fmt.Errorf("%w; previous configuration restored", cause)
}

// checkCandidate has postconf parse the candidate files in a scratch
// directory and confirms it reads the intended limits from them.
func (m *Postfix) checkCandidate(ctx context.Context, mainCF, masterCF []byte, l Limits) error {
	dir, err := os.MkdirTemp("", "smtpguard-postfix-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), mainCF, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), masterCF, 0o644); err != nil {
		return err
	}
	got, err := m.values(ctx, dir)
	if err != nil {
		return err
	}
	if got != l {
		return fmt.Errorf("postconf reads %+v from it, not %+v", got, l)
	}
	return nil
}

// reload makes a running Postfix read the new configuration: the
// Options.Reload override; systemctl reload when a systemd postfix unit
// runs the master process; otherwise `postfix reload`. A stopped Postfix
// reads the new files when it starts.
func (m *Postfix) reload(ctx context.Context) error {
	if m.opts.Reload != nil {
		return m.opts.Reload(ctx)
	}
	if _, err := m.run(ctx, m.postfix, "-c", m.configDir, "status"); err != nil {
		return nil // not running
	}
	if out, err := m.run(ctx, m.postconf, "-c", m.configDir, "-h", "queue_directory"); err == nil {
		pidFile := filepath.Join(strings.TrimSpace(string(out)), "pid", "master.pid")
		if pid, err := readPIDFile(pidFile); err == nil && pid > 0 {
			if unit := m.reloader.systemdUnit(ctx, pid, "postfix"); unit != "" {
				return m.reloader.reloadUnit(ctx, unit)
			}
		}
	}
	if _, err := m.run(ctx, m.postfix, "-c", m.configDir, "reload"); err != nil {
		return err
	}
	return nil
}
