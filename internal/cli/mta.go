package cli

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/mta"
)

func newMTACmd(e *env) *cobra.Command {
	var opts mta.Options
	cmd := &cobra.Command{
		Use:   "mta",
		Short: "Show and set the MTA's limit on simultaneous incoming SMTP connections",
		Long: `Show which MTA is installed and running, the accounts smtpguard allows for it,
and its limits on simultaneous incoming SMTP connections (Exim's
smtp_accept_max, smtp_accept_max_per_host and smtp_accept_reserve; Postfix's
smtpd process limit and smtpd_client_connection_count_limit), as the MTA itself
reports them.

The configuration managed is the one the MTA reports as in use, or
--exim-config / $SMTPGUARD_EXIM_CONFIG, --postfix-config-dir /
$SMTPGUARD_POSTFIX_CONFIG_DIR.`,
		Args: exactArgs(0, "'status' or 'set max-connections N'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("mta expects 'status' or 'set max-connections N' (see 'smtpguard mta --help')")
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := cmd.Root().PersistentPreRunE(cmd, args); err != nil {
				return err
			}
			if opts.EximConfig == "" {
				opts.EximConfig = e.opts.Getenv("SMTPGUARD_EXIM_CONFIG")
			}
			if opts.PostfixConfigDir == "" {
				opts.PostfixConfigDir = e.opts.Getenv("SMTPGUARD_POSTFIX_CONFIG_DIR")
			}
			opts.Root = e.opts.MTA.Root
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&opts.EximConfig, "exim-config", "", "Exim configuration file to manage (default: the one Exim reports)")
	cmd.PersistentFlags().StringVar(&opts.PostfixConfigDir, "postfix-config-dir", "", "Postfix configuration directory (default: postconf -h config_directory)")
	cmd.AddCommand(newMTAStatusCmd(e, &opts), newMTASetCmd(e, &opts))
	return cmd
}

func newMTAStatusCmd(e *env, opts *mta.Options) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the MTA, its accounts and its connection limits",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			eng, err := e.engine(ctx)
			if err != nil {
				return err
			}
			defer eng.Close()
			m, err := eng.MTA(ctx, *opts)
			if err != nil && !errors.Is(err, mta.ErrUnsupported) {
				return err
			}
			info, ierr := m.Info(ctx)
			if asJSON {
				if werr := writeJSON(e.stdio.Out, info); werr != nil {
					return werr
				}
				return ierr
			}
			w := tabwriter.NewWriter(e.stdio.Out, 0, 0, 2, ' ', 0)
			state := "not installed"
			if info.Installed {
				state = "installed, not running"
				if info.Running {
					state = "installed and running"
				}
			}
			fmt.Fprintf(w, "MTA:\t%s %s (%s)\n", info.MTA, info.Version, state)
			fmt.Fprintf(w, "Allowed accounts:\t%s\n", listOrNone(append(append([]string{}, info.Users...), info.ListUsers...), -1))
			if info.Config != "" {
				fmt.Fprintf(w, "Configuration:\t%s\n", info.Config)
			}
			if errors.Is(err, mta.ErrUnsupported) {
				fmt.Fprintf(w, "Connection limits:\tnot managed (%s)\n", err)
			} else {
				fmt.Fprintf(w, "Max connections:\t%s\n", limit(info.Limits.MaxConnections))
				fmt.Fprintf(w, "Max per host:\t%s\n", limit(info.Limits.MaxPerHost))
				fmt.Fprintf(w, "Reserved:\t%d\n", info.Limits.Reserve)
			}
			w.Flush()
			return ierr
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func limit(n int) string {
	if n == 0 {
		return "unlimited"
	}
	return fmt.Sprint(n)
}

func newMTASetCmd(e *env, opts *mta.Options) *cobra.Command {
	var perHost, reserve int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "set max-connections N",
		Short: "Set the maximum number of simultaneous incoming SMTP connections",
		Long: `Set the MTA's maximum number of simultaneous incoming SMTP connections (Exim's
smtp_accept_max), and optionally the maximum per client host and the number
reserved for hosts listed in smtp_reserve_hosts. Options not given keep their
current values.

The new configuration is checked by the MTA itself before it goes live, then
replaced atomically and the MTA reloaded; on any failure the previous
configuration is restored and nothing changes.`,
		Example: `  smtpguard mta set max-connections 100
  smtpguard mta set max-connections 100 --per-host 10 --reserve 5`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 || args[0] != "max-connections" {
				return usagef("mta set expects 'max-connections N' (see 'smtpguard mta set --help')")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var max int
			if _, err := fmt.Sscan(args[1], &max); err != nil || strings.TrimLeft(args[1], "0123456789") != "" {
				return usagef("max-connections %q is not a whole number", args[1])
			}
			ctx := cmd.Context()
			eng, err := e.engine(ctx)
			if err != nil {
				return err
			}
			defer eng.Close()
			ch := engine.MTAChange{MaxConnections: &max}
			if cmd.Flags().Changed("per-host") {
				ch.MaxPerHost = &perHost
			}
			if cmd.Flags().Changed("reserve") {
				ch.Reserve = &reserve
			}
			res, l, err := eng.SetMTALimits(ctx, e.actor(), *opts, ch)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(e.stdio.Out, struct {
					Changed bool       `json:"changed"`
					Message string     `json:"message"`
					Limits  mta.Limits `json:"limits"`
				}{res.Changed, res.Message, l})
			}
			fmt.Fprintln(e.stdio.Out, res.Message)
			return nil
		},
	}
	cmd.Flags().IntVar(&perHost, "per-host", 0, "at most this many from one client host (0: unlimited)")
	cmd.Flags().IntVar(&reserve, "reserve", 0, "of the maximum, keep this many for reserved hosts")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
