package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/store"
)

func newTokenCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage API tokens for scripts (Authorization: Bearer)",
		Long: `Manage the tokens scripts use with the JSON API under /api/v1/ of
'smtpguard serve', sent as "Authorization: Bearer TOKEN".

A token is shown once, when created; only its hash is stored. An admin token
can do everything; a reseller token acts for a reseller account (--account),
with that account's privileges and users at the time of each request.`,
		Example: `  smtpguard token create deploy --role admin
  smtpguard token create billing --role reseller --account reseller1 --json
  smtpguard token list
  smtpguard token revoke deploy`,
		Args: unknownSubcommand,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("token expects create, list or revoke (see 'smtpguard token --help')")
		},
	}
	cmd.AddCommand(newTokenCreateCmd(e), newTokenListCmd(e), newTokenRevokeCmd(e))
	return cmd
}

func newTokenCreateCmd(e *env) *cobra.Command {
	var role, account string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create NAME --role admin|reseller [--account NAME]",
		Short: "Create an API token and print it, once",
		Long: `Create an API token and print it on standard output, once: store it now, it
cannot be shown again. With --json: {"name", "role", "token"}.`,
		Example: `  TOKEN=$(smtpguard token create deploy --role admin)
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:9725/api/v1/status`,
		Args: exactArgs(1, "one token name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if role == "" {
				if err := store.CheckName("token", name); err != nil {
					return usageError{err}
				}
				return usagef("--role is required: admin or reseller")
			}
			return e.withEngine(cmd, func(ctx context.Context, eng *engine.Engine) error {
				secret, res, err := eng.CreateToken(ctx, e.actor(), name, role, account)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(e.stdio.Out, struct {
						Name  string `json:"name"`
						Role  string `json:"role"`
						Token string `json:"token"`
					}{name, role, secret})
				}
				fmt.Fprintln(e.stdio.Out, secret)
				fmt.Fprintln(e.stdio.Err, res.Message)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "admin (everything) or reseller (acts for --account)")
	cmd.Flags().StringVar(&account, "account", "", "the account the token acts for (required for reseller tokens)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {\"name\", \"role\", \"token\"}")
	return cmd
}

func newTokenListCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List API tokens (never their secrets)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.withEngine(cmd, func(ctx context.Context, eng *engine.Engine) error {
				toks, err := eng.Store().Tokens(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					if toks == nil {
						toks = []store.Token{}
					}
					return writeJSON(e.stdio.Out, toks)
				}
				if len(toks) == 0 {
					fmt.Fprintln(e.stdio.Out, "no API tokens")
					return nil
				}
				w := tabwriter.NewWriter(e.stdio.Out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "NAME\tROLE\tACCOUNT\tCREATED\tLAST USED")
				for _, t := range toks {
					used := "never"
					if t.LastUsed != nil {
						used = t.LastUsed.Format("2006-01-02 15:04")
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, orDash(t.Account), t.CreatedAt.Format("2006-01-02 15:04"), used)
				}
				return w.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func newTokenRevokeCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an API token at once",
		Args:  exactArgs(1, "one token name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.withEngine(cmd, func(ctx context.Context, eng *engine.Engine) error {
				res, err := eng.RevokeToken(ctx, e.actor(), args[0])
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdio.Out, res.Message)
				return nil
			})
		},
	}
}
