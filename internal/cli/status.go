package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/policy"
)

func newStatusCmd(e *env) *cobra.Command {
	var asJSON, all bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the policy, who may connect, and whether the kernel enforces it",
		Long: `Show the policy, who may connect, and whether the kernel enforces it.

Long lists (allowed users and groups, the uids that may connect) show their
first ` + fmt.Sprint(statusListMax) + ` entries and a count; --all prints every entry, --json too.

Exit status 1 (after printing) when the database holds no policy while
smtpguard's rules are in the kernel (kernel state "policy missing"): the
database was deleted, emptied or replaced, and the rules stay in force until
you restore it, import a policy, or run 'smtpguard disable'.`,
		Example: `  smtpguard status
  smtpguard status --all
  smtpguard status --json | jq .allowed_users`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			eng, err := e.engine(ctx)
			if err != nil {
				return err
			}
			defer eng.Close()
			st, err := eng.Status(ctx)
			if err != nil {
				return err
			}
			view := statusView{Status: st, Daemon: e.daemonState(ctx)}
			if asJSON {
				if err := writeJSON(e.stdio.Out, view); err != nil {
					return err
				}
			} else {
				max := statusListMax
				if all {
					max = -1
				}
				printStatus(e.stdio.Out, view, max)
			}
			if st.Kernel.State == engine.KernelPolicyMissing {
				// The stored policy does not describe what the kernel
				// enforces: scripts and monitoring must notice.
				return fmt.Errorf("%w: %s; to fix: %s", engine.ErrPolicyMissing, strings.Join(st.Kernel.Problems, "; "), st.Kernel.Fix)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.Flags().BoolVar(&all, "all", false, "print long lists in full")
	return cmd
}

// statusListMax is how many entries of a long list status prints without
// --all: on a server with thousands of allowed users the rest would bury the
// state.
const statusListMax = 20

// statusView is status --json: the engine's status, and the daemon's.
type statusView struct {
	engine.Status
	Daemon daemonState `json:"daemon"`
}

// daemonState says whether the state directory's daemon runs, and whether it
// records blocked attempts.
type daemonState struct {
	Running   bool `json:"running"`
	PID       int  `json:"pid,omitempty"`
	Recording bool `json:"recording"`
}

// daemonState asks the daemon (once per command).
func (e *env) daemonState(ctx context.Context) daemonState {
	info := e.runningDaemon(ctx, slog.New(slog.NewTextHandler(e.stdio.Err, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if info == nil {
		return daemonState{}
	}
	return daemonState{Running: true, PID: info.PID, Recording: info.Recording}
}

func (d daemonState) String() string {
	switch {
	case !d.Running:
		return "not running: blocked attempts are not recorded and drift is not repaired (systemctl start smtpguard)"
	case !d.Recording:
		return fmt.Sprintf("running (pid %d), but not recording blocked attempts (see its log: journalctl -u smtpguard)", d.PID)
	}
	return fmt.Sprintf("running (pid %d), recording blocked attempts", d.PID)
}

// printStatus prints st for a person; max bounds long lists (-1: no bound).
func printStatus(out io.Writer, view statusView, max int) {
	st := view.Status
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	state := "disabled (every user may connect to remote SMTP servers)"
	switch {
	case st.Enabled:
		state = fmt.Sprintf("enabled (backend %s, mode %s)", st.Backend, st.Mode)
		if st.Cgroup != "" {
			state = fmt.Sprintf("enabled (backend %s on cgroup %s, mode %s)", st.Backend, st.Cgroup, st.Mode)
		}
	case st.Kernel.State == engine.KernelPolicyMissing:
		state = "NO STORED POLICY, but the kernel still enforces smtpguard's rules (see Kernel)"
	case st.Kernel.State == engine.KernelLeftovers:
		state = "disabled, but smtpguard's rules are still in the kernel (see Kernel)"
	}
	fmt.Fprintf(w, "SMTP restriction:\t%s\n", state)
	kernel := st.Kernel.State
	switch {
	case st.Kernel.Error != "":
		kernel += ": " + st.Kernel.Error
	case st.Kernel.Fix != "":
		kernel += ": " + strings.Join(st.Kernel.Problems, "; ") + "; to fix: " + st.Kernel.Fix
	case len(st.Kernel.Problems) > 0:
		kernel += ": " + strings.Join(st.Kernel.Problems, "; ") + " (run 'smtpguard enable' to repair)"
	}
	fmt.Fprintf(w, "Kernel:\t%s\n", kernel)
	fmt.Fprintf(w, "Daemon:\t%s\n", view.Daemon)
	fmt.Fprintf(w, "Restricted ports:\t%s\n", policy.PortsString(st.Ports))
	local := "restricted like remote ones"
	if st.AllowLocal {
		local = "always reachable (loopback and this host's addresses)"
	}
	fmt.Fprintf(w, "Local addresses:\t%s\n", local)
	fmt.Fprintf(w, "Allowed users:\t%s\n", listOrNone(st.AllowedUsers, max))
	fmt.Fprintf(w, "Allowed groups:\t%s\n", listOrNone(st.AllowedGroups, max))
	if len(st.Exceptions) == 0 {
		fmt.Fprintf(w, "Exceptions:\tnone\n")
	}
	for i, ex := range st.Exceptions {
		label := ""
		if i == 0 {
			label = "Exceptions:"
		}
		who := "user " + ex.User
		if ex.Group != "" {
			who = "group " + ex.Group
		}
		ports := "all restricted ports"
		if len(ex.Ports) > 0 {
			ports = "port " + policy.PortsString(ex.Ports)
		}
		where := ""
		switch {
		case ex.Unresolved && ex.LookupError != "":
			where = " (unresolved: " + ex.LookupError + ")"
		case ex.Unresolved:
			where = " (unresolved)"
		case ex.ResolvedAt != nil:
			addrs := make([]string, len(ex.Addresses))
			for j, a := range ex.Addresses {
				addrs[j] = a.String()
			}
			where = fmt.Sprintf(" = %s (resolved %s)", strings.Join(addrs, ", "), ex.ResolvedAt.Format("15:04:05"))
			if ex.LookupError != "" {
				where += "; last lookup failed: " + ex.LookupError + ", keeping these"
			}
		}
		if ex.Rate != "" {
			where += ", rate " + ex.Rate
		}
		fmt.Fprintf(w, "%s\t%s to %s on %s%s\n", label, who, ex.To, ports, where)
	}
	printRates(w, st, max)
	printHolds(w, st)
	fmt.Fprintf(w, "MTA:\t%s\n", found(st.MTA.MTAs))
	fmt.Fprintf(w, "List manager:\t%s\n", found(st.MTA.ListManagers))
	for _, u := range st.Unresolved {
		fmt.Fprintf(w, "Warning:\t%s\n", u)
	}
	for _, c := range st.Backends {
		// The one in use says why it was chosen when there was a choice.
		if !c.Active || c.Chosen != "" && len(st.Backends) > 1 {
			fmt.Fprintf(w, "Backend %s:\t%s\n", c.Name, c.Why)
		}
	}
	for i, l := range st.Limitations {
		label := ""
		if i == 0 {
			label = "Not covered:"
		}
		fmt.Fprintf(w, "%s\t%s\n", label, l)
	}
	for _, c := range st.Conflicts {
		fmt.Fprintf(w, "Conflict:\t%s: %s\n\tfix: %s\n", c.Tool, c.Detail, c.Fix)
	}
	if st.UpdatedAt != nil {
		fmt.Fprintf(w, "Last change:\t%s by %s\n", st.UpdatedAt.Format("2006-01-02 15:04:05 MST"), st.UpdatedBy)
	}
	if st.Kernel.State == engine.KernelPolicyMissing {
		// The default policy's uids are not what the kernel enforces.
		fmt.Fprintf(w, "May connect:\tunknown: the rules in the kernel are not in the database\n")
		w.Flush()
		return
	}
	fmt.Fprintf(w, "May connect:\t%d uid(s)\n", len(st.AllowedUIDs))
	w.Flush()
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  UID\tUSER\tWHY\n")
	for i, g := range st.AllowedUIDs {
		if max >= 0 && i == max {
			fmt.Fprintf(w, "  ...\tand %d more\t(status --all lists them)\n", len(st.AllowedUIDs)-max)
			break
		}
		fmt.Fprintf(w, "  %d\t%s\t%s\n", g.UID, orDash(g.User), strings.Join(g.Reasons, ", "))
	}
	w.Flush()
}

// listOrNone joins s, or says none; beyond max entries (-1: no bound) it
// counts the rest.
func listOrNone(s []string, max int) string {
	if len(s) == 0 {
		return "none"
	}
	if max >= 0 && len(s) > max {
		return fmt.Sprintf("%s and %d more (status --all lists them)", strings.Join(s[:max], ", "), len(s)-max)
	}
	return strings.Join(s, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func found(fs []mta.Found) string {
	if len(fs) == 0 {
		return "none detected"
	}
	var parts []string
	for _, f := range fs {
		users := "no service account found"
		if len(f.Users) > 0 {
			users = "allowed: " + strings.Join(f.Users, ", ")
		}
		parts = append(parts, fmt.Sprintf("%s (%s; %s)", f.Name, f.Path, users))
	}
	return strings.Join(parts, "; ")
}
