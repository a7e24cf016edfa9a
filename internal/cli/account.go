package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/store"
)

func newAccountCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "account",
		Short: "Manage web UI accounts: administrators and resellers",
		Long: `Manage the accounts that sign in to the web UI ('smtpguard serve').

An admin can do everything the command line can. A reseller can do nothing
until granted the smtp-restrictions privilege; then they see the SMTP
Restrictions status, can enable and disable it, and see blocked attempts of
the system users they own (account own).

Passwords are read from the first line of standard input when it is not a
terminal, or prompted for twice; never from the command line, where other
users could read them in the process list. They are stored as argon2id hashes.`,
		Example: `  smtpguard account add admin --role admin
  printf '%s\n' "$PASSWORD" | smtpguard account add reseller1 --role reseller
  smtpguard account grant reseller1 smtp-restrictions
  smtpguard account own reseller1 alice bob
  smtpguard account unlock admin
  smtpguard account list`,
		Args: unknownSubcommand,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("account expects add, passwd, del, list, grant, revoke, own or unlock (see 'smtpguard account --help')")
		},
	}
	cmd.AddCommand(newAccountAddCmd(e), newAccountPasswdCmd(e), newAccountDelCmd(e), newAccountListCmd(e),
		newAccountPrivilegeCmd(e, true), newAccountPrivilegeCmd(e, false), newAccountOwnCmd(e), newAccountUnlockCmd(e))
	return cmd
}

// unknownSubcommand refuses arguments that name no subcommand.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for '%s'%s (see '%s --help')", args[0], cmd.CommandPath(), didYouMean(cmd, args[0]), cmd.CommandPath())
	}
	return nil
}

// withEngine opens the state directory's engine for one command. Changes go
// through its operations; eng.Store() only reads.
func (e *env) withEngine(cmd *cobra.Command, fn func(ctx context.Context, eng *engine.Engine) error) error {
	ctx := cmd.Context()
	eng, err := e.engine(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	return accountError(fn(ctx, eng))
}

// accountError turns a missing account or token into a usage error (exit 2);
// the engine marks other bad input itself.
func accountError(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return usageError{err}
	}
	return err
}

// readPassword reads a new password: prompted twice on a terminal, else the
// first line of standard input.
func (e *env) readPassword() (string, error) {
	if f, ok := e.stdio.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(e.stdio.Err, "Password: ")
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stdio.Err)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(e.stdio.Err, "Repeat password: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stdio.Err)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(pw) != string(again) {
			return "", usagef("the passwords differ; nothing changed")
		}
		return string(pw), engine.ValidatePassword(string(pw))
	}
	line, err := bufio.NewReader(e.stdio.In).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from standard input: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", usagef("no password on standard input: pipe it in (printf '%%s\\n' \"$PASSWORD\" | smtpguard account ...) or run on a terminal to be prompted")
	}
	return pw, engine.ValidatePassword(pw)
}

func newAccountAddCmd(e *env) *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "add NAME --role admin|reseller",
		Short: "Create a web account; the password comes from stdin or a prompt",
		Example: `  smtpguard account add admin --role admin
  printf '%s\n' "$PASSWORD" | smtpguard account add reseller1 --role reseller`,
		Args: exactArgs(1, "one account name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if role == "" {
				if err := store.CheckName("account", name); err != nil {
					return usageError{err}
				}
				return usagef("--role is required: admin or reseller")
			}
			// Checked before the password is asked for, so nobody types one
			// for nothing; the engine checks again.
			if err := engine.ValidateAccount(name, role); err != nil {
				return err
			}
			pw, err := e.readPassword()
			if err != nil {
				return err
			}
			return e.withEngine(cmd, func(ctx context.Context, eng *engine.Engine) error {
				res, err := eng.AddAccount(ctx, e.actor(), name, role, pw)
				if err != nil {
					return err
				}
				msg := res.Message
				if role == store.RoleReseller {
					msg += fmt.Sprintf("; it can do nothing until you run 'smtpguard account grant %s %s'", name, store.PrivSMTPRestrictions)
				}
				fmt.Fprintln(e.stdio.Out, msg)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "admin (everything) or reseller (only what is granted)")
	return cmd
}

func newAccountPasswdCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "passwd NAME",
		Short: "Set an account's password and sign it out everywhere",
		Args:  exactArgs(1, "one account name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			// Check the account first, so nobody types a password for nothing.
			if err := e.withEngine(cmd, func(ctx context.Context, eng *engine.Engine) error {
				_, err := eng.Store().Account(ctx, name)
				return err
			}); err != nil {
				return err
			}
			pw, err := e.readPassword()
			if err != nil {
				return err
			}
			return e.withEngine(cmd, func(ctx context.Context, eng *engine.Engine) error {
				res, err := eng.SetPassword(ctx, e.actor(), name, pw)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdio.Out, res.Message)
				return nil
			})
		},
	}
}

func newAccountDelCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "del NAME",
		Short: "Delete an account, its sessions and its API tokens",
		Args:  exactArgs(1, "one account name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.withEngine(cmd, func(ctx context.Context, eng *engine.Engine) error {
				res, err := eng.DeleteAccount(ctx, e.actor(), args[0])
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdio.Out, res.Message)
				return nil
			})
		},
	}
}

func newAccountListCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List web accounts, their privileges and the users resellers own",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.withEngine(cmd, func(ctx context.Context, eng *engine.Engine) error {
				accts, err := eng.Store().Accounts(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					if accts == nil {
						accts = []store.Account{}
					}
					return writeJSON(e.stdio.Out, accts)
				}
				if len(accts) == 0 {
					fmt.Fprintln(e.stdio.Out, "no accounts: create one with 'smtpguard account add NAME --role admin'")
					return nil
				}
				w := tabwriter.NewWriter(e.stdio.Out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "NAME\tROLE\tPRIVILEGES\tUSERS\tCREATED")
				for _, a := range accts {
					privs, users := strings.Join(a.Privileges, ","), strings.Join(a.Users, ",")
					if a.Role == store.RoleAdmin {
						privs, users = "all", "all"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.Role, orDash(privs), orDash(users), a.CreatedAt.Format("2006-01-02 15:04"))
				}
				if err := w.Flush(); err != nil {
					return err
				}
				return e.printLockouts(ctx, eng)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func newAccountPrivilegeCmd(e *env, grant bool) *cobra.Command {
	use, short := "grant", "Give a reseller a privilege (smtp-restrictions)"
	if !grant {
		use, short = "revoke", "Take a privilege back from a reseller"
	}
	return &cobra.Command{
		Use:     use + " NAME " + store.PrivSMTPRestrictions,
		Short:   short,
		Example: fmt.Sprintf("  smtpguard account %s reseller1 %s", use, store.PrivSMTPRestrictions),
		Args:    exactArgs(2, "an account name and a privilege"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, priv := args[0], args[1]
			return e.withEngine(cmd, func(ctx context.Context, eng *engine.Engine) error {
				op := eng.Grant
				if !grant {
					op = eng.RevokePrivilege
				}
				res, err := op(ctx, e.actor(), name, priv)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdio.Out, res.Message)
				return nil
			})
		},
	}
}

func newAccountOwnCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "own NAME [USER...]",
		Short: "Set the system users a reseller owns (replaces the list; none clears it)",
		Long: `Set the system users a reseller owns, replacing the previous list; with no
users, the reseller owns none. A reseller sees blocked attempts of the users
they own, and no one else's.`,
		Example: `  smtpguard account own reseller1 alice bob
  smtpguard account own reseller1            # owns nobody`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usagef("%s expects an account name and system users (see '%s --help')", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name, users := args[0], args[1:]
			return e.withEngine(cmd, func(ctx context.Context, eng *engine.Engine) error {
				res, err := eng.SetOwned(ctx, e.actor(), name, users)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdio.Out, res.Message)
				return nil
			})
		},
	}
}

// printLockouts lists the web sign-in lockouts in force, if any.
func (e *env) printLockouts(ctx context.Context, eng *engine.Engine) error {
	now := time.Now()
	locks, err := eng.Store().SignInLocks(ctx, now)
	if err != nil || len(locks) == 0 {
		return err
	}
	fmt.Fprintln(e.stdio.Out, "\nSign-in lockouts (lift with 'smtpguard account unlock NAME'):")
	w := tabwriter.NewWriter(e.stdio.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ACCOUNT\tFROM\tFAILURES\tREFUSED UNTIL")
	for _, l := range locks {
		acct, from, until := l.Account, l.Remote, l.LockedUntil
		if acct == "" {
			acct = "(any)"
		}
		if from == "" {
			from = "anywhere (slowed down)"
		}
		if until.IsZero() {
			until = l.NextAt
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", acct, from, l.Failures, until.Local().Format("2006-01-02 15:04:05"))
	}
	return w.Flush()
}

func newAccountUnlockCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "unlock NAME",
		Short: "Lift an account's web sign-in lockout",
		Long: `Lift every web sign-in lockout and slow-down of an account, from every client
address, and record it in the audit log.

After repeated wrong passwords the web UI locks an account for 15 minutes,
but only for the client address they came from; from anywhere, it only slows
sign-ins down. Administrators who share an address with someone guessing
(127.0.0.1 through an SSH tunnel, a NAT) can be locked out with them: this
lets them back in at once. The lockout survives restarts of the daemon.`,
		Example: `  smtpguard account unlock admin`,
		Args:    exactArgs(1, "one account name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.withEngine(cmd, func(ctx context.Context, eng *engine.Engine) error {
				res, err := eng.UnlockAccount(ctx, e.actor(), args[0])
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(e.stdio.Out, struct {
						Changed bool   `json:"changed"`
						Message string `json:"message"`
					}{res.Changed, res.Message})
				}
				fmt.Fprintln(e.stdio.Out, res.Message)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
