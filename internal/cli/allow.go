package cli

import (
	"context"

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
	short := "Allow a " + use
	if !allow {
		short = "Revoke a " + use
	}
	cmd := &cobra.Command{
		Use:   use + " " + arg,
		Short: short,
		Args:  exactArgs(1, "one "+use+" name or id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.mutation(cmd, asJSON, func(ctx context.Context, eng *engine.Engine) (engine.Result, error) {
				if allow {
					return eng.Allow(ctx, e.actor(), kind, args[0])
				}
				return eng.Revoke(ctx, e.actor(), kind, args[0])
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
