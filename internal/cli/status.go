package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/policy"
)

func newStatusCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the policy, who may connect, and whether the kernel enforces it",
		Args:  exactArgs(0, "no arguments"),
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
			if asJSON {
				return writeJSON(e.stdio.Out, st)
			}
			printStatus(e.stdio.Out, st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func printStatus(out io.Writer, st engine.Status) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	state := "disabled (every user may connect to remote SMTP servers)"
	if st.Enabled {
		state = fmt.Sprintf("enabled (backend %s, mode %s)", st.Backend, st.Mode)
	}
	fmt.Fprintf(w, "SMTP restriction:\t%s\n", state)
	kernel := st.Kernel.State
	switch {
	case st.Kernel.Error != "":
		kernel += ": " + st.Kernel.Error
	case len(st.Kernel.Problems) > 0:
		kernel += ": " + strings.Join(st.Kernel.Problems, "; ") + " (run 'smtpguard enable' to repair)"
	}
	fmt.Fprintf(w, "Kernel:\t%s\n", kernel)
	fmt.Fprintf(w, "Restricted ports:\t%s\n", policy.PortsString(st.Ports))
	local := "restricted like remote ones"
	if st.AllowLocal {
		local = "always reachable (loopback and this host's addresses)"
	}
	fmt.Fprintf(w, "Local addresses:\t%s\n", local)
	fmt.Fprintf(w, "Allowed users:\t%s\n", listOrNone(st.AllowedUsers))
	fmt.Fprintf(w, "Allowed groups:\t%s\n", listOrNone(st.AllowedGroups))
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
		fmt.Fprintf(w, "%s\t%s to %s on %s%s\n", label, who, ex.To, ports, where)
	}
	fmt.Fprintf(w, "MTA:\t%s\n", found(st.MTA.MTAs))
	fmt.Fprintf(w, "List manager:\t%s\n", found(st.MTA.ListManagers))
	for _, u := range st.Unresolved {
		fmt.Fprintf(w, "Warning:\t%s\n", u)
	}
	for i, l := range st.Limitations {
		label := ""
		if i == 0 {
			label = "Not covered:"
		}
		fmt.Fprintf(w, "%s\t%s\n", label, l)
	}
	if st.UpdatedAt != nil {
		fmt.Fprintf(w, "Last change:\t%s by %s\n", st.UpdatedAt.Format("2006-01-02 15:04:05 MST"), st.UpdatedBy)
	}
	fmt.Fprintf(w, "May connect:\t%d uid(s)\n", len(st.AllowedUIDs))
	w.Flush()
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  UID\tUSER\tWHY\n")
	for _, g := range st.AllowedUIDs {
		fmt.Fprintf(w, "  %d\t%s\t%s\n", g.UID, orDash(g.User), strings.Join(g.Reasons, ", "))
	}
	w.Flush()
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
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
