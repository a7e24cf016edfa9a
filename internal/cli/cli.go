// Package cli is smtpguard's command line. Each subcommand lives in its own file
// and calls the engine directly (serialised by the engine's lock file), so the
// CLI works whether or not the daemon runs; while the daemon runs, the engine's
// kernel calls go to it over its socket (internal/enforce/remote).
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/conflicts"
	"github.com/smtpguard/smtpguard/internal/doctor"
	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/remote"
	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/sockdiag"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1 // the system refused: permissions, kernel, database
	ExitUsage   = 2 // the input was wrong; nothing changed
)

// Stdio is where a command reads and writes.
type Stdio struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// Options are the seams to the system; tests replace them.
type Options struct {
	// Backends returns the enforcement candidates, best first.
	Backends   func(logger *slog.Logger) []enforce.Backend
	PasswdPath string
	GroupPath  string
	MTA        mta.Config
	Getenv     func(string) string
	// Actor names the person running the command, for the audit log.
	Actor func() string
	// UnitDir and Systemctl are where install-service writes the unit and
	// the systemctl it runs; defaults /etc/systemd/system and "systemctl".
	UnitDir   string
	Systemctl string
	// Executable is the binary path written into the unit (default: this one).
	Executable func() (string, error)
	// Sessions ends established connections that new rules refuse (nil:
	// none, for tests that must not touch the host's sockets).
	Sessions engine.SessionEnder
	// Conflicts finds other tools' SMTP blocks for status (nil: none).
	Conflicts engine.ConflictDetector
	// ServeBackends are the backends the daemon (serve) enforces with and
	// serves to the CLI on its socket (default: Backends).
	// owned asks for backends that keep their kernel objects to themselves
	// while the daemon runs (serve --own-table).
	ServeBackends func(logger *slog.Logger, owned bool) []enforce.Backend
	// Doctor is what doctor probes (zero: the real system).
	Doctor doctor.System
}

// env is what every subcommand gets.
type env struct {
	opts     Options
	stdio    Stdio
	stateDir string
	verbose  bool
	resolver engine.Resolver // set by serve --dns-server
	cgroup   string          // set by enable --cgroup: where cgroup backends probe and apply
	// daemon is what the state directory's daemon said of itself, once
	// asked (daemonChecked); nil when none runs.
	daemon        *remote.Info
	daemonChecked bool
	// retryOwned: a change refused as owned elsewhere while no daemon
	// answered is run again (mutate.go), so the engine need not audit
	// that refusal.
	retryOwned bool
}

// usageError marks bad command lines (exit 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// Run executes the command line with the default system wiring.
func Run(ctx context.Context, args []string, stdio Stdio) int {
	return RunWith(ctx, args, stdio, DefaultOptions())
}

// DefaultOptions wires the real system.
func DefaultOptions() Options {
	return Options{
		Backends: func(logger *slog.Logger) []enforce.Backend {
			return systemBackends(logger, os.Getenv("SMTPGUARD_BPFFS"))
		},
		Getenv:     os.Getenv,
		Actor:      currentActor,
		Executable: os.Executable,
		Sessions:   sockdiag.Ender{},
		Conflicts:  conflicts.Detector{},
		ServeBackends: func(logger *slog.Logger, owned bool) []enforce.Backend {
			return serveBackends(logger, owned, os.Getenv("SMTPGUARD_BPFFS"))
		},
	}
}

// RunWith executes the command line and returns the exit code.
func RunWith(ctx context.Context, args []string, stdio Stdio, opts Options) int {
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	if opts.Actor == nil {
		opts.Actor = func() string { return "unknown" }
	}
	if opts.Executable == nil {
		opts.Executable = os.Executable
	}
	if opts.ServeBackends == nil && opts.Backends != nil {
		backends := opts.Backends
		opts.ServeBackends = func(logger *slog.Logger, _ bool) []enforce.Backend { return backends(logger) }
	}
	e := &env{opts: opts, stdio: stdio}
	root := newRootCmd(e)
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stdio.Err, "smtpguard: %s\n", oneLine(err))
	var ue usageError
	if errors.As(err, &ue) || engine.IsValidation(err) {
		return ExitUsage
	}
	return ExitFailure
}

// oneLine keeps error output to a single line even when several problems
// were joined.
func oneLine(err error) string {
	msg := strings.TrimPrefix(err.Error(), engine.ErrValidation.Error()+": ")
	return strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", "; ")), " ")
}

func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "smtpguard",
		Short: "Stop users and scripts from bypassing the mail server to send mail directly",
		Long: `smtpguard restricts outgoing connections to remote SMTP ports (25, 465, 587
and 2525 by default). Once enabled, only root, the mail server (MTA), the mailing-list
manager and the users and groups you allow can open them; everyone else (PHP
scripts, cron jobs, a compromised web app) gets "connection refused" at once,
while local delivery through the MTA keeps working.

State lives in the state directory (--state-dir, $SMTPGUARD_STATE_DIR, default
/var/lib/smtpguard). Changing the kernel's rules needs root.`,
		Example: `  smtpguard enable                 # restrict, with the best backend for this host
  smtpguard allow user alice       # let one account send directly
  smtpguard allow group mailers    # ...or every member of a group
  smtpguard status                 # what is enforced, and for whom
  smtpguard disable                # lift the restriction`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		// With Args and RunE on the root, cobra hands us unknown commands
		// instead of failing with an untyped error, so they exit 2 like any
		// other usage error.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q%s (see 'smtpguard --help')", args[0], didYouMean(cmd, args[0]))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if e.stateDir == "" {
				e.stateDir = e.opts.Getenv("SMTPGUARD_STATE_DIR")
			}
			if e.stateDir == "" {
				e.stateDir = engine.DefaultStateDir
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&e.stateDir, "state-dir", "", "state directory (default $SMTPGUARD_STATE_DIR or "+engine.DefaultStateDir+")")
	root.PersistentFlags().BoolVarP(&e.verbose, "verbose", "v", false, "log what is done, including the rules sent to the kernel")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usagef("%v (see '%s --help')", err, cmd.CommandPath())
	})
	root.AddCommand(
		newEnableCmd(e), newDisableCmd(e), newStatusCmd(e),
		newAllowCmd(e), newRevokeCmd(e), newSetCmd(e),
		newPlanCmd(e), newExportCmd(e), newImportCmd(e),
		newEventsCmd(e), newAuditCmd(e),
		newServeCmd(e), newInstallServiceCmd(e), newUninstallServiceCmd(e),
		newMTACmd(e), newAccountCmd(e), newTokenCmd(e),
		newDoctorCmd(e), newHoldCmd(e), newReleaseCmd(e),
	)
	addVersion(root, e)
	return root
}

// engine opens the engine on the state directory, logging warnings (or, with
// --verbose, everything) to stderr.
func (e *env) engine(ctx context.Context) (*engine.Engine, error) {
	level := slog.LevelWarn
	if e.verbose {
		level = slog.LevelDebug
	}
	return e.engineWithLogger(ctx, slog.New(slog.NewTextHandler(e.stdio.Err, &slog.HandlerOptions{Level: level})))
}

// engineWithLogger opens the engine for a command. While the state
// directory's daemon runs, the engine's backends are the daemon's, reached
// over its socket (the daemon may be the only process allowed to change the
// table, and it keeps the kernel state cached); otherwise the command works
// on the kernel directly.
func (e *env) engineWithLogger(ctx context.Context, logger *slog.Logger) (*engine.Engine, error) {
	var backends []enforce.Backend
	if e.opts.Backends != nil {
		backends = enforce.InCgroup(e.opts.Backends(logger), e.cgroup)
	}
	if info := e.runningDaemon(ctx, logger); info != nil {
		logger.Debug("changing the kernel through the daemon", "pid", info.PID, "socket", remote.SocketPath(e.stateDir))
		backends = remote.Wrap(remote.SocketPath(e.stateDir), backends)
	}
	return e.openEngine(ctx, logger, backends)
}

// daemonPingTimeout bounds the check for a running daemon: its socket
// answers pings without waiting for anything.
const daemonPingTimeout = 2 * time.Second

// runningDaemon asks the state directory's daemon about itself, once per
// command. A missing socket, or one left by a daemon that died, means none
// runs; a daemon that cannot be reached is reported and worked around.
func (e *env) runningDaemon(ctx context.Context, logger *slog.Logger) *remote.Info {
	if e.daemonChecked {
		return e.daemon
	}
	e.daemonChecked = true
	ctx, cancel := context.WithTimeout(ctx, daemonPingTimeout)
	defer cancel()
	info, err := remote.Ping(ctx, remote.SocketPath(e.stateDir))
	switch {
	case err == nil:
		e.daemon = &info
	case !errors.Is(err, remote.ErrNoDaemon):
		logger.Warn("cannot reach the smtpguard daemon; working on the kernel directly", "err", err)
	}
	return e.daemon
}

// openEngine opens the engine with the given backends.
func (e *env) openEngine(ctx context.Context, logger *slog.Logger, backends []enforce.Backend) (*engine.Engine, error) {
	eng, err := engine.Open(ctx, engine.Config{
		StateDir:   e.stateDir,
		PasswdPath: e.opts.PasswdPath,
		GroupPath:  e.opts.GroupPath,
		MTA:        e.opts.MTA,
		Backends:   backends,
		Logger:     logger,
		Resolver:   e.resolver,
		Sessions:   e.opts.Sessions,
		Conflicts:  e.opts.Conflicts,
		// Only a command that found no daemon runs a change again.
		RetriesOwnedElsewhere: e.retryOwned && e.daemon == nil,
	})
	if err != nil {
		return nil, err
	}
	return eng, nil
}

func (e *env) actor() engine.Actor {
	return engine.Actor{Name: e.opts.Actor(), Source: "cli"}
}

// exactArgs wraps cobra's arity check as a usage error with a hint.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s expects %s (see '%s --help')", cmd.CommandPath(), what, cmd.CommandPath())
		}
		return nil
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// currentActor names whoever runs the command: the login behind sudo too.
func currentActor() string {
	name := fmt.Sprintf("uid %d", os.Getuid())
	if u, err := user.LookupId(fmt.Sprint(os.Getuid())); err == nil {
		name = u.Username
	}
	if s := os.Getenv("SUDO_USER"); s != "" && s != name {
		name += " (sudo by " + s + ")"
	}
	return name
}
