package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/policy"
)

func newAllowCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "allow",
		Short: "Let a user or group connect to remote SMTP servers",
		Long: `Let a user or every member of a group (primary and supplementary members alike)
connect to remote SMTP servers directly. Takes effect at once when enabled.`,
		Example: `  smtpguard allow user alice
  smtpguard allow user 1005
  smtpguard allow group mailers`,
		Args: exactArgs(0, "'user NAME|UID' or 'group NAME|GID'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("allow expects 'user NAME|UID' or 'group NAME|GID' (see 'smtpguard allow --help')")
		},
	}
	cmd.AddCommand(principalCmd(e, "user", "NAME|UID", policy.KindUser, true), principalCmd(e, "group", "NAME|GID", policy.KindGroup, true))
	return cmd
}

func newRevokeCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Withdraw what allow granted",
		Long:  `Withdraw a user's or group's permission to connect to remote SMTP servers. Takes effect at once when enabled.`,
		Example: `  smtpguard revoke user alice
  smtpguard revoke group mailers`,
		Args: exactArgs(0, "'user NAME|UID' or 'group NAME|GID'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("revoke expects 'user NAME|UID' or 'group NAME|GID' (see 'smtpguard revoke --help')")
		},
	}
	cmd.AddCommand(principalCmd(e, "user", "NAME|UID", policy.KindUser, false), principalCmd(e, "group", "NAME|GID", policy.KindGroup, false))
	return cmd
}

func principalCmd(e *env, use, arg string, kind policy.PrincipalKind, allow bool) *cobra.Command {
	var asJSON bool
	var to, ports, rate string
	short := "Allow a " + use
	if !allow {
		short = "Revoke a " + use
	}
	cmd := &cobra.Command{
		Use:   use + " " + arg,
		Short: short,
		Args:  exactArgs(1, "one "+use+" name or id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ports != "" && to == "" {
				return usagef("--port needs --to: an exception is for one destination")
			}
			var opts engine.AllowOptions
			if allow && cmd.Flags().Changed("rate") {
				opts.Rate = &rate
			}
			return e.mutation(cmd, asJSON, func(ctx context.Context, eng *engine.Engine) (engine.Result, error) {
				switch {
				case allow && to != "":
					return eng.AllowExceptionWith(ctx, e.actor(), kind, args[0], to, ports, opts)
				case allow:
					return eng.AllowWith(ctx, e.actor(), kind, args[0], opts)
				case to != "":
					return eng.RevokeException(ctx, e.actor(), kind, args[0], to)
				default:
					return eng.Revoke(ctx, e.actor(), kind, args[0])
				}
			})
		},
	}
	if allow {
		cmd.Long = fmt.Sprintf(`Let a %s connect to remote SMTP servers directly. With --to, only to that
destination (a host name, an address or a CIDR) and, with --port, only on
those restricted ports: the way to let a site send through its relay
(SendGrid, Mailgun, SES, Office 365) without opening every SMTP server in the
world. Host names are resolved now and re-resolved by the daemon as their DNS
TTLs run out (IPv4 and IPv6).

--rate N/PERIOD (PERIOD s, m, h or d) limits the connections this allowance
lets through: N may start at once, and N more each PERIOD; one over the limit
is refused as a blocked one would be and recorded as rate-limited. Without
--rate an allowance follows 'smtpguard set rate-limit'; --rate off exempts it
from that default, --rate default follows it again. Given for one already
allowed, only the rate changes.`, use)
		cmd.Example = fmt.Sprintf(`  smtpguard allow %[1]s %[2]s
  smtpguard allow %[1]s %[2]s --to smtp.sendgrid.net --port 587
  smtpguard allow %[1]s %[2]s --to 192.0.2.0/24
  smtpguard allow %[1]s %[2]s --to smtp.sendgrid.net --rate 100/h`, use, map[string]string{"user": "alice", "group": "mailers"}[use])
		cmd.Flags().StringVar(&to, "to", "", "only this destination: host name, address or CIDR")
		cmd.Flags().StringVar(&ports, "port", "", "with --to: only these restricted ports, e.g. 587 or 465,587 (default: all)")
		cmd.Flags().StringVar(&rate, "rate", "", "limit its connections: N/PERIOD (PERIOD s, m, h or d), off, or default")
	} else {
		cmd.Example = fmt.Sprintf(`  smtpguard revoke %[1]s %[2]s
  smtpguard revoke %[1]s %[2]s --to smtp.sendgrid.net`, use, map[string]string{"user": "alice", "group": "mailers"}[use])
		cmd.Flags().StringVar(&to, "to", "", "revoke only the exception for this destination")
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
