package cli

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/doctor"
	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// doctorOrdinary is the account doctor checks without --user: nobody, which
// no rule should let through.
const (
	doctorOrdinary    = "nobody"
	doctorOrdinaryUID = 65534
)

// doctorMaxAddrs bounds how many of a host's addresses doctor checks.
const doctorMaxAddrs = 4

func newDoctorCmd(e *env) *cobra.Command {
	var userArg, to string
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check that outgoing mail works as the policy means, and say how to fix what does not",
		Long: `Check, one line each, what must hold for outgoing mail to work as the policy
means, and print the fix of each check that fails:

  policy     the policy's verdict for the user connecting to the destination,
             and the rule that decides it
  kernel     the kernel enforces the stored policy
  daemon     smtpguard serve runs and records blocked attempts
  mta        the MTA is installed, running and allowed to reach remote servers
  mta-smtp   the MTA accepts mail on 127.0.0.1:25
  conflicts  no other tool (CSF, cPanel, Imunify360) blocks outgoing SMTP
  upstream   the network lets this server reach the destination at all: a
             connect as root, whom smtpguard never restricts, so a timeout or
             a reset there is your provider's block, not smtpguard's

With --user, the policy check passes when that user may connect to the
destination ("why can't alice send?"); without it, doctor checks an ordinary
user (nobody, uid 65534) and passes when smtpguard refuses them: that is what
the restriction is for. --to defaults to any remote server on port 25, and the
upstream check needs it. Run as root.

Exit status 0 when every check passes, 1 when one fails, 2 for bad input.`,
		Example: `  smtpguard doctor
  smtpguard doctor --user www-data --to gmail-smtp-in.l.google.com
  smtpguard doctor --user alice --to smtp.sendgrid.net:587 --json`,
		Args: exactArgs(0, "no arguments (the user and the destination are --user and --to)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, port, err := parseDoctorTo(to)
			if err != nil {
				return err
			}
			if timeout <= 0 || timeout > 5*time.Minute {
				return usagef("--timeout %v: give a duration from 1ms to 5m", timeout)
			}
			rep, err := e.doctor(cmd.Context(), userArg, host, port, timeout)
			if err != nil {
				return err
			}
			if asJSON {
				err = writeJSON(e.stdio.Out, rep)
			} else {
				err = rep.WriteText(e.stdio.Out)
			}
			if err != nil {
				return err
			}
			if failed := rep.Failed(); len(failed) > 0 {
				return fmt.Errorf("%d of %d checks failed: %s", len(failed), len(rep.Checks), strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&userArg, "user", "", "check this user's verdict, by name or uid (default: an ordinary user, "+doctorOrdinary+")")
	cmd.Flags().StringVar(&to, "to", "", "destination HOST[:PORT] (default port 25) for the policy and upstream checks")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print as JSON: {"ok", "checks": [{"name", "ok", "detail", "fix"}]}`)
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long each network check waits")
	return cmd
}

// parseDoctorTo reads HOST[:PORT], [V6ADDR]:PORT or a bare IPv6 address.
func parseDoctorTo(s string) (string, uint16, error) {
	if s == "" {
		return "", 25, nil
	}
	host, portText := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			if !strings.HasSuffix(s, "]") {
				return "", 0, usagef("--to %q: write HOST[:PORT], e.g. mx.example.net:25 or [2001:db8::25]:25", s)
			}
			h = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		}
		host, portText = h, p
	case strings.Count(s, ":") == 1:
		host, portText, _ = strings.Cut(s, ":")
	}
	port := uint16(25)
	if portText != "" {
		n, err := strconv.ParseUint(portText, 10, 16)
		if err != nil || n == 0 {
			return "", 0, usagef("--to %q: the port must be a number from 1 to 65535", s)
		}
		port = uint16(n)
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostName(host) {
		return "", 0, usagef("--to %q: %q is neither an address nor a host name", s, host)
	}
	return host, port, nil
}

func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

// doctorUser is the uid the policy check asks about.
func doctorUser(dir *policy.Directory, arg string) (uint32, bool, error) {
	if arg == "" {
		if a, ok := dir.User(doctorOrdinary); ok {
			return a.UID, true, nil
		}
		return doctorOrdinaryUID, true, nil
	}
	if a, ok := dir.User(arg); ok {
		return a.UID, false, nil
	}
	if n, err := strconv.ParseUint(arg, 10, 32); err == nil {
		return uint32(n), false, nil
	}
	return 0, false, usagef("--user %q: no such user on this host (give an account name or a uid)", arg)
}

// doctor gathers the facts and runs the checklist.
func (e *env) doctor(ctx context.Context, userArg, host string, port uint16, timeout time.Duration) (doctor.Report, error) {
	sys := e.opts.Doctor.WithDefaults()
	eng, err := e.engine(ctx)
	if err != nil {
		return doctor.Report{}, err
	}
	defer eng.Close()
	dir, err := eng.Directory()
	if err != nil {
		return doctor.Report{}, err
	}
	uid, ordinary, err := doctorUser(dir, userArg)
	if err != nil {
		return doctor.Report{}, err
	}
	st, err := eng.Status(ctx)
	if err != nil {
		return doctor.Report{}, err
	}
	daemon := e.daemonState(ctx)
	info := mta.BaseInfo(ctx, mta.Options{Root: e.opts.MTA.Root, ProcRoot: sys.ProcRoot}, dir)

	// The destination's addresses, for the policy and the upstream check;
	// without --to, the policy is asked about any remote server (an
	// address no exception names).
	addrs, lookupErr := []netip.Addr{{}}, error(nil)
	if host != "" {
		addrs, lookupErr = doctorAddrs(ctx, sys, host, timeout)
	}
	lookupFailed := doctor.Check{Detail: fmt.Sprintf("cannot resolve %s: %v", host, lookupErr),
		Fix: "check the host name, and this server's resolver (/etc/resolv.conf)"}

	steps := []doctor.Step{
		{Name: doctor.NamePolicy, Run: func(ctx context.Context) doctor.Check {
			if lookupErr != nil {
				return lookupFailed
			}
			local, _ := sys.LocalAddrs()
			var ds []engine.Decision
			for _, a := range addrs {
				d, err := eng.Decide(ctx, uid, a, port, slices.Contains(local, a.Unmap()))
				if err != nil {
					return doctor.Check{Detail: "cannot read the policy: " + err.Error(), Fix: "run doctor as root (sudo smtpguard doctor)"}
				}
				ds = append(ds, d)
			}
			return doctor.Policy(doctor.Target{Ordinary: ordinary, Host: host, Port: port}, ds)
		}},
		{Name: doctor.NameKernel, Run: func(context.Context) doctor.Check { return doctor.Kernel(st.Kernel) }},
		{Name: doctor.NameDaemon, Run: func(context.Context) doctor.Check {
			return doctor.Daemon(daemon.Running, daemon.Recording, daemon.PID)
		}},
		{Name: doctor.NameMTA, Run: func(context.Context) doctor.Check { return doctor.MTA(info, st.AllowedUIDs) }},
		{Name: doctor.NameMTASMTP, Run: func(ctx context.Context) doctor.Check {
			return doctor.LocalSMTP(ctx, sys.Dial, sys.LocalSMTP, doctor.StartFix(info.MTA), timeout)
		}},
		{Name: doctor.NameConflicts, Run: func(context.Context) doctor.Check { return doctor.Conflicts(st.Conflicts) }},
		{Name: doctor.NameUpstream, Run: func(ctx context.Context) doctor.Check {
			switch {
			case host == "":
				return doctor.NotChecked("give --to HOST[:PORT] (a domain's MX host, your smarthost) to test whether the network lets this server reach it")
			case lookupErr != nil:
				return lookupFailed
			case sys.Euid() != 0:
				return doctor.Check{Detail: "doctor does not run as root: smtpguard may refuse its own connection, so it cannot tell what the network does",
					Fix: "run doctor as root (sudo smtpguard doctor ...)"}
			}
			return doctor.Upstream(ctx, sys.Dial, host, addrs, port, timeout)
		}},
	}
	// The runner's bound covers a step's own: each network step waits up
	// to timeout itself.
	return doctor.Run(ctx, timeout+time.Second, steps), nil
}

// doctorAddrs resolves host (an address is its own answer), at most
// doctorMaxAddrs of them.
func doctorAddrs(ctx context.Context, sys doctor.System, host string, timeout time.Duration) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addrs, err := sys.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		if a = a.Unmap(); !slices.Contains(out, a) && len(out) < doctorMaxAddrs {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no addresses")
	}
	return out, nil
}
