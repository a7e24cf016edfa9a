package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/enforce/bpf"
	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/policy"
)

func newEnableCmd(e *env) *cobra.Command {
	var backend, cgroup string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "enable",
		Short: "Turn the SMTP restriction on",
		Long: `Turn the SMTP restriction on. From then on only root, the MTA, the list manager
and allowed users and groups may connect to remote SMTP ports; everyone else's
connect() fails at once with "connection refused".

Running enable again re-applies the rules, which repairs a flushed ruleset.`,
		Example: `  smtpguard enable
  smtpguard enable --backend nft
  smtpguard enable --backend bpf --cgroup /sys/fs/cgroup/system.slice`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cg, err := cgroupFlag(cgroup)
			if err != nil {
				return err
			}
			if cg != "" && backend != policy.BackendAuto && backend != bpf.Name {
				return usagef("--cgroup is for --backend %s (the %s backend does not attach to cgroups)", bpf.Name, backend)
			}
			// Probe and apply in the named cgroup, never near the root.
			e.cgroup = cg
			return e.mutation(cmd, asJSON, func(ctx context.Context, eng *engine.Engine) (engine.Result, error) {
				return eng.EnableIn(ctx, e.actor(), backend, cg)
			})
		},
	}
	cmd.Flags().StringVar(&backend, "backend", policy.BackendAuto, "enforcement backend: "+backendChoices())
	cmd.Flags().StringVar(&cgroup, "cgroup", "", "cgroup v2 directory the bpf backend attaches to, kept with the policy (default: the cgroup2 root)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func newDisableCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "disable",
		Short: "Turn the SMTP restriction off and remove smtpguard's rules",
		Long: `Turn the SMTP restriction off: smtpguard's kernel rules are removed (only its
own nftables table; nothing else is touched) and every user may connect to
remote SMTP servers again. Allowed users, groups and settings are kept for the
next enable.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.mutation(cmd, asJSON, func(ctx context.Context, eng *engine.Engine) (engine.Result, error) {
				return eng.Disable(ctx, e.actor())
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
