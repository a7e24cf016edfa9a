package web

import (
	"strings"
	"time"

	"github.com/smtpguard/smtpguard/internal/engine"
)

// DaemonState is what the status page shows of the daemon serving it
// ("smtpguard serve" fills it from daemon.State).
type DaemonState struct {
	Recording    bool // blocked attempts are being read from the kernel
	Repairs      int64
	LastRepair   time.Time // zero: none since the daemon started
	LastProblems []string  // what was wrong before the last repair
}

// cardState is the status card: what is really enforced, in one word and a
// colour, with what to do when it is wrong.
type cardState struct {
	Tone  string // "good", "warn" or "bad"
	Label string // "Enforcing", "Log only", ...
	Help  string
	Fix   string // what to do, when something is wrong
}

// stateOf reads the policy and the kernel's state as one of the states an
// administrator must tell apart at a glance: a log-only or drifted
// restriction must not look like an enforced one.
func stateOf(enabled bool, mode string, k engine.Kernel) cardState {
	problems := strings.Join(k.Problems, "; ")
	switch k.State {
	case engine.KernelPolicyMissing:
		return cardState{Tone: "bad", Label: "No stored policy",
			Help: "The database holds no policy, but smtpguard's rules are still in the kernel: " + problems + ".",
			Fix:  webFix(k.Fix)}
	case engine.KernelLeftovers:
		return cardState{Tone: "bad", Label: "Disabled, rules left behind",
			Help: problems + ".",
			Fix:  "Press Disable to remove them, or Enable to enforce the stored policy."}
	case "unknown":
		return cardState{Tone: "bad", Label: "Not enforcing: error",
			Help: "The kernel's rules cannot be checked, so nobody can tell what is enforced: " + k.Error + ".",
			Fix:  "See the smtpguard log (journalctl -u smtpguard): the daemon must run as root. Then press Apply again."}
	case "drift":
		return cardState{Tone: "bad", Label: "Drifted",
			Help: "The kernel's rules differ from the stored policy: " + problems + ".",
			Fix:  "The daemon repairs this within seconds. If this stays, press Apply again, and look for another tool changing the firewall."}
	}
	if !enabled {
		return cardState{Tone: "bad", Label: "Disabled",
			Help: "Every user of this server can connect to remote SMTP servers directly, bypassing the mail server: a compromised script can send spam in your server's name."}
	}
	switch mode {
	case "log":
		return cardState{Tone: "warn", Label: "Log only, nothing is blocked",
			Help: "Every user's connections to remote SMTP servers are let through and recorded under Blocked attempts, to see who would be blocked. Switch the mode to Reject under Ports, mode & limits to enforce."}
	case "explain":
		return cardState{Tone: "good", Label: "Enforcing, with an explanation",
			Help: "Only root, the mail server and the users an administrator allowed reach remote SMTP servers; everyone else's script gets an SMTP error saying why and what to do instead, with a reference to look up under Blocked attempts."}
	case "redirect":
		return cardState{Tone: "good", Label: "Redirecting to the local MTA",
			Help: "Only root, the mail server and the users an administrator allowed reach remote SMTP servers; everyone else's connection is sent to this server's own mail server, which applies its rules."}
	}
	return cardState{Tone: "good", Label: "Enforcing",
		Help: "Only root, the mail server and the users an administrator allowed can connect to remote SMTP servers; everyone else's connection is refused at once."}
}

// webFix words the engine's fix (written for the command line) for the
// page: the commands stay, since they are run on the server, but not flags.
func webFix(fix string) string {
	if fix == "" {
		return ""
	}
	return "To fix: " + fix + "."
}
