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
		{"mode reject|redirect|log", "Set what happens to connections that are not allowed",
			`reject (default): refuse at once; the script sees "connection refused".
redirect: send the connection to the same port on loopback (127.0.0.1 or ::1),
  where the local MTA listens, so a script's mail still goes out through the
  MTA's queue, policies and logs (what cPanel does). TLS certificate checks of
  the remote name then fail; allow such users or use reject.
log: let the connection through but count and log it, to try a policy out.`,
			func(ctx context.Context, eng *engine.Engine, a engine.Actor, v string) (engine.Result, error) {
				return eng.SetMode(ctx, a, v)
			}},
		{"allow-local on|off", "Keep loopback and this host's own addresses reachable for everyone",
			"on (default): connections to loopback and this host's own addresses are never restricted, so local delivery through the MTA works.",
			func(ctx context.Context, eng *engine.Engine, a engine.Actor, v string) (engine.Result, error) {
				return eng.SetAllowLocal(ctx, a, v)
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
