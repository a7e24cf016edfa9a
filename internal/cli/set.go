package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/engine"
)

func newSetCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Change restricted ports, mode or local delivery",
		Example: `  smtpguard set ports 25,465,587,2525
  smtpguard set mode log
  smtpguard set allow-local on`,
		Args: exactArgs(0, "'ports LIST', 'mode MODE' or 'allow-local on|off'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("set expects 'ports LIST', 'mode MODE' or 'allow-local on|off' (see 'smtpguard set --help')")
		},
	}
	type setting struct {
		use, short, long string
		op               func(ctx context.Context, eng *engine.Engine, actor engine.Actor, v string) (engine.Result, error)
	}
	for _, s := range []setting{
		{"ports LIST", "Set the restricted remote ports (comma-separated)",
			"Set the remote TCP ports that only allowed users may connect to, e.g. 25,465,587.",
			func(ctx context.Context, eng *engine.Engine, a engine.Actor, v string) (engine.Result, error) {
				return eng.SetPorts(ctx, a, v)
			}},
		{"mode reject|redirect|explain|log", "Set what happens to connections that are not allowed",
			`reject (default): refuse at once; the script sees "connection refused".
redirect: send the connection to the same port on loopback (127.0.0.1 or ::1),
  where the local MTA listens, so a script's mail still goes out through the
  MTA's queue, policies and logs (what cPanel does). TLS certificate checks of
  the remote name then fail; allow such users or use reject.
explain: hand connections to plain-text SMTP ports to the daemon's responder
  on loopback, which answers "554 5.7.1" with the user, the destination, how
  to send instead and a reference for 'smtpguard events --ref'; the script's
  own error log shows it. Port 465 (implicit TLS) is refused as in reject, and
  with no daemon running every connection is refused as in reject.
log: let the connection through but count and log it, to try a policy out.`,
			func(ctx context.Context, eng *engine.Engine, a engine.Actor, v string) (engine.Result, error) {
				return eng.SetMode(ctx, a, v)
			}},
		{"allow-local on|off", "Keep loopback and this host's own addresses reachable for everyone",
			"on (default): connections to loopback and this host's own addresses are never restricted, so local delivery through the MTA works.",
			func(ctx context.Context, eng *engine.Engine, a engine.Actor, v string) (engine.Result, error) {
				return eng.SetAllowLocal(ctx, a, v)
			}},
		{"rate-limit N/PERIOD|off", "Limit the connections of every allowed user, group and exception",
			`The default rate limit of every allowed user, group and exception without a
--rate of its own, e.g. 100/h (PERIOD s, m, h or d); off (default) limits
none. N connections may start at once and N more each PERIOD, per uid; one
over the limit is refused as a blocked one would be and recorded as
rate-limited. root, the MTA's and the list manager's accounts are never limited.`,
			func(ctx context.Context, eng *engine.Engine, a engine.Actor, v string) (engine.Result, error) {
				return eng.SetRateLimit(ctx, a, v)
			}},
		{"hold-after N/PERIOD|off", "Hold a user automatically after a burst of refused attempts",
			`Hold a uid (suspend its allowances and exceptions, see 'smtpguard hold') once
N (at most 1000) of its connections were refused or rate-limited within
PERIOD (s, m, h or d), e.g. 10/m; off (default) never holds automatically. Logged-only attempts
(mode log) do not count. The third hold within 24 hours lasts until released.`,
			func(ctx context.Context, eng *engine.Engine, a engine.Actor, v string) (engine.Result, error) {
				return eng.SetHoldAfter(ctx, a, v)
			}},
		{"hold-for DURATION", "Set how long a hold lasts",
			"How long an automatic hold, or 'smtpguard hold' without --for, lasts: e.g. 30m, 1h (default), 1d; 0 holds until released.",
			func(ctx context.Context, eng *engine.Engine, a engine.Actor, v string) (engine.Result, error) {
				return eng.SetHoldFor(ctx, a, v)
			}},
	} {
		var asJSON bool
		sub := &cobra.Command{
			Use:   s.use,
			Short: s.short,
			Long:  s.long,
			Args:  exactArgs(1, "one value"),
			RunE: func(cmd *cobra.Command, args []string) error {
				return e.mutation(cmd, asJSON, func(ctx context.Context, eng *engine.Engine) (engine.Result, error) {
					return s.op(ctx, eng, e.actor(), args[0])
				})
			},
		}
		sub.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
		cmd.AddCommand(sub)
	}
	return cmd
}
