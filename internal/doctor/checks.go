package doctor

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/smtpguard/smtpguard/internal/conflicts"
	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// The checks, in the order doctor reports them. Scripts match on these names.
const (
	NamePolicy    = "policy"
	NameKernel    = "kernel"
	NameDaemon    = "daemon"
	NameMTA       = "mta"
	NameMTASMTP   = "mta-smtp"
	NameConflicts = "conflicts"
	NameUpstream  = "upstream"
)

// Target is what the policy check asks about: a user connecting to a
// destination.
type Target struct {
	// Ordinary is set when no user was named: doctor then checks that the
	// restriction protects, with an account no rule should let through.
	Ordinary bool
	// Host is the destination as given ("" for any remote server), Port
	// its port.
	Host string
	Port uint16
}

// Policy is the check of the policy's verdict for one user and destination.
// A named user passes when the policy lets them through: doctor answers "why
// can't alice send?". An ordinary user passes when the policy refuses them:
// that is what the restriction is for. decisions are one per address of the
// destination (one, with an invalid address, for "any remote server").
func Policy(t Target, decisions []engine.Decision) Check {
	if len(decisions) == 0 {
		return Check{Detail: "no address to check the policy for", Fix: "check the host name given with --to"}
	}
	good := func(d engine.Decision) bool {
		if t.Ordinary {
			return d.Refused() || d.Rule == policy.RuleLocal
		}
		return !d.Refused()
	}
	// The first address that fails tells; else the first.
	d := decisions[0]
	if i := slices.IndexFunc(decisions, func(d engine.Decision) bool { return !good(d) }); i >= 0 {
		d = decisions[i]
	}
	who := d.User
	if who == "" {
		who = "uid " + strconv.FormatUint(uint64(d.UID), 10)
	} else {
		who += " (uid " + strconv.FormatUint(uint64(d.UID), 10) + ")"
	}
	if t.Ordinary {
		who = "an ordinary user, " + who + ","
	}
	to := "a remote server"
	if d.Address.IsValid() {
		to = d.Address.String()
		if t.Host != "" && t.Host != to {
			to += " (" + t.Host + ")"
		}
	}
	to += " port " + strconv.Itoa(int(d.Port))
	if good(d) {
		verb := "may connect to"
		switch {
		case d.Refused():
			verb = "is refused by smtpguard connecting to"
		case d.Enabled && d.Verdict == policy.VerdictLog:
			verb = "is let through, and recorded, connecting to"
		}
		return Check{OK: true, Detail: fmt.Sprintf("%s %s %s: %s", who, verb, to, d.Why)}
	}
	if !t.Ordinary {
		name := d.User
		if name == "" {
			name = strconv.FormatUint(uint64(d.UID), 10)
		}
		dest := t.Host
		if dest == "" {
			dest = "HOST"
		}
		if d.HoldRefuses {
			// The policy allows the user: the hold is what refuses.
			return Check{Detail: fmt.Sprintf("smtpguard refuses %s connecting to %s: %s", who, to, d.Why),
				Fix: fmt.Sprintf("once the account is clean (smtpguard events shows what it tried), end the hold: smtpguard release user %s", name)}
		}
		return Check{Detail: fmt.Sprintf("smtpguard refuses %s connecting to %s: %s", who, to, d.Why),
			Fix: fmt.Sprintf("send through the local MTA on localhost:25 instead, or let this user reach it: smtpguard allow user %s --to %s --port %d", name, dest, d.Port)}
	}
	c := Check{Detail: fmt.Sprintf("%s can connect to %s directly: %s", who, to, d.Why)}
	switch {
	case !d.Enabled:
		c.Fix = "enable the restriction: smtpguard enable"
	case d.Verdict == policy.VerdictLog:
		c.Fix = "mode log only records such connections: once the events show no legitimate direct sender, run smtpguard set mode reject"
	case d.Rule == policy.RuleOtherPort:
		c.Fix = fmt.Sprintf("restrict this port too: smtpguard set ports with %d added to the ports listed", d.Port)
	default:
		c.Fix = "an ordinary account should not be allowed: revoke what allows it (" + d.Why + ")"
	}
	return c
}

// Kernel is the check that the kernel enforces the stored policy.
func Kernel(k engine.Kernel) Check {
	problems := strings.Join(k.Problems, "; ")
	switch k.State {
	case "in sync":
		return Check{OK: true, Detail: "the kernel enforces the stored policy (in sync)"}
	case "not enforcing":
		return Check{OK: true, Detail: "the restriction is disabled and no smtpguard rules are in the kernel"}
	case "drift":
		return Check{Detail: "the kernel's rules differ from the stored policy: " + problems,
			Fix: "run smtpguard enable to repair them (a running daemon repairs drift on its own: see its log, journalctl -u smtpguard)"}
	case "unknown":
		return Check{Detail: "the kernel could not be checked: " + k.Error,
			Fix: "run doctor as root (sudo smtpguard doctor)"}
	}
	c := Check{Detail: fmt.Sprintf("kernel state %q: %s", k.State, problems), Fix: k.Fix}
	if c.Fix == "" {
		c.Fix = "run smtpguard enable to enforce the stored policy, or smtpguard disable to remove the rules"
	}
	return c
}

// Daemon is the check that smtpguard serve runs and records blocked
// attempts (what status reports as the daemon's state).
func Daemon(running, recording bool, pid int) Check {
	switch {
	case !running:
		return Check{Detail: "the daemon (smtpguard serve) is not running: blocked attempts are not recorded and drift is not repaired",
			Fix: "start it: systemctl start smtpguard (after smtpguard install-service once), or run smtpguard serve"}
	case !recording:
		return Check{Detail: fmt.Sprintf("the daemon runs (pid %d) but does not record blocked attempts", pid),
			Fix: "see why in its log (journalctl -u smtpguard), then restart it: systemctl restart smtpguard"}
	}
	return Check{OK: true, Detail: fmt.Sprintf("the daemon runs (pid %d) and records blocked attempts", pid)}
}

// ServiceName is the systemd unit an MTA usually runs as.
func ServiceName(name string) string {
	if name == "exim" {
		return "exim4"
	}
	return name
}

// StartFix is how to start the MTA named name.
func StartFix(name string) string {
	if name == "" || name == "none" {
		return "install an MTA (apt install exim4-daemon-light, or postfix) and start it"
	}
	return "start the MTA: systemctl start " + ServiceName(name)
}

// MTA is the check that the MTA is installed, running and allowed to reach
// remote servers. grants are the uids the policy lets through, with why.
func MTA(info mta.Info, grants []policy.Grant) Check {
	if !info.Installed {
		return Check{Detail: "no MTA is installed (looked for Exim, Postfix, Sendmail, OpenSMTPD): scripts have no local server to hand their mail to",
			Fix: StartFix("none") + ", then send mail through it on localhost:25"}
	}
	if !info.Running {
		return Check{Detail: fmt.Sprintf("%s is installed but not running: mail handed to it is not delivered", info.MTA),
			Fix: StartFix(info.MTA)}
	}
	if len(info.Users) == 0 {
		return Check{Detail: fmt.Sprintf("%s runs, but none of the accounts it sends as exists here, so smtpguard allows none: its outgoing mail is refused", info.MTA),
			Fix: "allow the account the MTA sends as: smtpguard allow user NAME"}
	}
	var allowed, refused []string
	for _, u := range info.Users {
		if slices.ContainsFunc(grants, func(g policy.Grant) bool { return g.User == u }) {
			allowed = append(allowed, u)
		} else {
			refused = append(refused, u)
		}
	}
	if len(refused) > 0 {
		return Check{Detail: fmt.Sprintf("%s runs, but smtpguard does not let its account %s through: its outgoing mail is refused", info.MTA, strings.Join(refused, ", ")),
			Fix: "allow it: smtpguard allow user " + refused[0]}
	}
	return Check{OK: true, Detail: fmt.Sprintf("%s is installed and running, and its account %s may connect", info.MTA, strings.Join(allowed, ", "))}
}

// Conflicts is the check that no other tool blocks outgoing SMTP.
func Conflicts(cs []conflicts.Conflict) Check {
	if len(cs) == 0 {
		return Check{OK: true, Detail: "no other tool blocks outgoing SMTP (CSF, cPanel, Imunify360 looked for)"}
	}
	var details, fixes []string
	for _, c := range cs {
		details = append(details, c.Tool+": "+c.Detail)
		if !slices.Contains(fixes, c.Fix) {
			fixes = append(fixes, c.Fix)
		}
	}
	return Check{Detail: strings.Join(details, "; "), Fix: strings.Join(fixes, "; ")}
}

// NotChecked is a check that passes because it was not asked for.
func NotChecked(why string) Check { return Check{OK: true, Detail: "not checked: " + why} }
