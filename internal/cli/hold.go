package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/engine"
)

func newHoldCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hold",
		Short: "Suspend a user's allowances and exceptions for a while",
		Long: `Put a user on hold: while the hold lasts the user is an ordinary user again
(its allowances and exceptions are suspended, established SMTP connections
they allowed are ended), without changing the stored policy. A hold ends by
itself after --for (default: the hold-for setting, 1h unless changed), or
when released with 'smtpguard release user NAME'. The third hold of a user
within 24 hours lasts until released. root and the MTA's and list manager's
accounts cannot be held.`,
		Example: `  smtpguard hold user alice --for 2h --reason "spam complaint #4711"
  smtpguard hold user alice --for 0       # until released`,
		Args: exactArgs(0, "'user NAME|UID'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("hold expects 'user NAME|UID' (see 'smtpguard hold --help')")
		},
	}
	var asJSON bool
	var forText, reason string
	user := &cobra.Command{
		Use:   "user NAME|UID",
		Short: "Hold a user",
		Long:  cmd.Long,
		Example: `  smtpguard hold user alice --for 2h --reason "spam complaint"
  smtpguard hold user 1005`,
		Args: exactArgs(1, "one user name or uid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := engine.HoldRequest{User: args[0], Reason: reason}
			if cmd.Flags().Changed("for") {
				d, err := engine.ParseHoldDuration(forText)
				if err != nil {
					return usagef("--for: %v", err)
				}
				req.For = &d
			}
			return e.mutation(cmd, asJSON, func(ctx context.Context, eng *engine.Engine) (engine.Result, error) {
				return eng.Hold(ctx, e.actor(), req)
			})
		},
	}
	user.Flags().StringVar(&forText, "for", "", "how long, e.g. 30m, 2h, 1d; 0 until released (default: the hold-for setting)")
	user.Flags().StringVar(&reason, "reason", "", "why, for status, the audit log and notifications")
	user.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.AddCommand(user)
	return cmd
}

func newReleaseCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "release",
		Short: "End a user's hold",
		Long: `End a user's hold at once: its allowances and exceptions apply again. The
attempts counted towards the automatic hold (hold-after) so far are
forgotten, so the burst that caused the hold does not hold the user again.`,
		Example: `  smtpguard release user alice`,
		Args:    exactArgs(0, "'user NAME|UID'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("release expects 'user NAME|UID' (see 'smtpguard release --help')")
		},
	}
	var asJSON bool
	user := &cobra.Command{
		Use:     "user NAME|UID",
		Short:   "Release a held user",
		Long:    cmd.Long,
		Example: cmd.Example,
		Args:    exactArgs(1, "one user name or uid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.mutation(cmd, asJSON, func(ctx context.Context, eng *engine.Engine) (engine.Result, error) {
				return eng.Release(ctx, e.actor(), args[0])
			})
		},
	}
	user.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.AddCommand(user)
	return cmd
}

// printHolds adds the holds and the automatic hold's settings to status,
// when there are any: a host that uses neither sees nothing new.
func printHolds(w io.Writer, st engine.Status) {
	if st.After != "off" {
		length := "for " + st.For
		if st.For == "until released" {
			length = st.For
		}
		fmt.Fprintf(w, "Automatic hold:\tafter %s refused or rate-limited attempts, %s\n", st.After, length)
	}
	for i, h := range st.Held {
		label := ""
		if i == 0 {
			label = "Held:"
		}
		until := "until released"
		if h.Until != nil {
			until = "until " + h.Until.Local().Format(statusTime)
		}
		fmt.Fprintf(w, "%s\tuser %s (uid %d) since %s, %s: %s (by %s; 'smtpguard release user %s')\n",
			label, orDash(h.User), h.UID, h.Since.Local().Format(statusTime), until, h.Reason, h.By, releaseName(h))
	}
}

// statusTime is how status shows times, with their zone.
const statusTime = "2006-01-02 15:04:05 MST"

func releaseName(h engine.HeldUser) string {
	if h.User != "" {
		return h.User
	}
	return fmt.Sprint(h.UID)
}
