//go:build linux

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/doctor"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// doctorWorld puts a "provider" namespace between the client (where
// smtpguard and doctor run) and the server, routing between them, as a
// hosting provider's network does:
//
//	client 192.0.2.1/26 -- 192.0.2.62/26 provider 192.0.2.65/26 -- 192.0.2.66/26 server
//
// The server listens on 25 and 587. The provider's own nft table (inside its
// namespace only) can drop forwarded port 25, as providers that block
// outbound SMTP do.
type doctorWorld struct {
	*world
	provider *testutil.NetNS
	plain    testutil.User
}

const (
	doctorServer    = "192.0.2.66"
	providerTable   = "sgtprovider"
	doctorTimeout   = "1s"
	providerBlock25 = `table inet ` + providerTable + ` {
	chain forward {
		type filter hook forward priority 0; policy accept;
		tcp dport 25 VERDICT
	}
}
`
)

func newDoctorWorld(t *testing.T) *doctorWorld {
	t.Helper()
	testutil.Privileged(t)
	client, provider, server := testutil.NewNetNS(t), testutil.NewNetNS(t), testutil.NewNetNS(t)
	testutil.Veth(t, client, []string{"192.0.2.1/26"}, provider, []string{"192.0.2.62/26"})
	testutil.Veth(t, provider, []string{"192.0.2.65/26"}, server, []string{doctorServer + "/26"})
	provider.Exec(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	client.Exec(t, "ip", "route", "add", "default", "via", "192.0.2.62")
	server.Exec(t, "ip", "route", "add", "default", "via", "192.0.2.65")
	for _, port := range []int{25, 587} {
		testutil.ListenTCP(t, server, testutil.HostPort(doctorServer, port))
	}
	w := &doctorWorld{
		world:    &world{t: t, client: client, server: server, stateDir: t.TempDir()},
		provider: provider,
		plain:    testutil.NewUser(t, "plain", ""),
	}
	return w
}

// blockPort25 makes the provider refuse forwarded port 25 with verdict
// ("drop", "reject with tcp reset") until unblockPort25.
func (w *doctorWorld) blockPort25(t *testing.T, verdict string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "provider.nft")
	if err := os.WriteFile(file, []byte(strings.Replace(providerBlock25, "VERDICT", verdict, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	w.provider.Exec(t, "nft", "-f", file)
}

func (w *doctorWorld) unblockPort25(t *testing.T) {
	t.Helper()
	w.provider.Exec(t, "nft", "delete", "table", "inet", providerTable)
}

// doctor runs smtpguard doctor --json in the client namespace.
func (w *doctorWorld) doctor(t *testing.T, args ...string) (int, map[string]doctor.Check) {
	t.Helper()
	w.t = t
	r := w.sg(append([]string{"doctor", "--json", "--timeout", doctorTimeout}, args...)...)
	var rep doctor.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("doctor --json %v: exit %d, %v\nstdout %q\nstderr %q", args, r.code, err, r.stdout, r.stderr)
	}
	checks := map[string]doctor.Check{}
	for _, c := range rep.Checks {
		checks[c.Name] = c
	}
	if len(checks) != 7 {
		t.Fatalf("doctor --json %v reported %d checks, want 7: %+v", args, len(checks), rep.Checks)
	}
	if (r.code == 0) != rep.OK || r.code != 0 && r.code != 1 {
		t.Errorf("doctor %v: exit %d with ok %v, want 0 exactly when every check passes, else 1", args, r.code, rep.OK)
	}
	return r.code, checks
}

func TestPrivilegedDoctorTellsProviderBlockFromSmtpguards(t *testing.T) {
	w := newDoctorWorld(t)
	w.sgOK("enable", "--backend", "nft")
	to25 := "--to=" + doctorServer + ":25"
	smtpguardRefuses := "smtpguard refuses " + w.plain.Name + " (uid "

	t.Run("the provider drops port 25", func(t *testing.T) {
		w.blockPort25(t, "drop")
		defer w.unblockPort25(t)
		code, c := w.doctor(t, "--user", w.plain.Name, to25)
		up := c[doctor.NameUpstream]
		if code != 1 || up.OK || up.Fix != doctor.UpstreamFix(25) ||
			!strings.Contains(up.Detail, "got no answer within 1s: the network upstream drops it (not smtpguard, which never restricts root)") {
			t.Errorf("exit %d, upstream check %+v; want 1 and the provider's port 25 block", code, up)
		}
		if pol := c[doctor.NamePolicy]; pol.OK || !strings.HasPrefix(pol.Detail, smtpguardRefuses) || !strings.Contains(pol.Detail, "the block rule (mode reject)") {
			t.Errorf("policy check = %+v, want smtpguard's own refusal of %s, naming the block rule", pol, w.plain.Name)
		}
		// The provider passes 587: the same server is reachable there.
		if _, c := w.doctor(t, "--user", w.plain.Name, "--to="+doctorServer+":587"); !c[doctor.NameUpstream].OK {
			t.Errorf("upstream check on 587 = %+v, want ok: the provider drops only 25", c[doctor.NameUpstream])
		}
	})

	t.Run("the provider resets port 25", func(t *testing.T) {
		w.blockPort25(t, "reject with tcp reset")
		defer w.unblockPort25(t)
		_, c := w.doctor(t, "--user", w.plain.Name, to25)
		up := c[doctor.NameUpstream]
		if up.OK || !strings.Contains(up.Detail, "was refused at once (connection refused): nothing listens there, or the network upstream resets it") ||
			up.Fix != "make sure "+doctorServer+" accepts connections on port 25; if it does, "+doctor.UpstreamFix(25) {
			t.Errorf("upstream check = %+v, want the reset named as a possible provider block", up)
		}
		if pol := c[doctor.NamePolicy]; pol.OK || !strings.HasPrefix(pol.Detail, smtpguardRefuses) {
			t.Errorf("policy check = %+v, want smtpguard's own refusal of %s", pol, w.plain.Name)
		}
	})

	t.Run("the provider passes port 25: only smtpguard's refusal is left", func(t *testing.T) {
		_, c := w.doctor(t, "--user", w.plain.Name, to25)
		if up := c[doctor.NameUpstream]; !up.OK || !strings.HasPrefix(up.Detail, "root connects to "+doctorServer+" port 25 in ") {
			t.Errorf("upstream check = %+v, want root to connect", up)
		}
		pol := c[doctor.NamePolicy]
		wantFix := "send through the local MTA on localhost:25 instead, or let this user reach it: smtpguard allow user " + w.plain.Name + " --to " + doctorServer + " --port 25"
		if pol.OK || !strings.HasPrefix(pol.Detail, smtpguardRefuses) || !strings.Contains(pol.Detail, "refused with a TCP reset") || pol.Fix != wantFix {
			t.Errorf("policy check = %+v, want smtpguard's refusal with fix %q", pol, wantFix)
		}
		// What doctor says is what the kernel does.
		w.expectBlocked(&w.plain, doctorServer+":25")
		w.expectReach(nil, doctorServer+":25")

		// Its fix works: the exception lets the user through, and doctor
		// names it.
		w.sgOK("allow", "user", w.plain.Name, "--to", doctorServer, "--port", "25")
		_, c = w.doctor(t, "--user", w.plain.Name, to25)
		if pol := c[doctor.NamePolicy]; !pol.OK || !strings.Contains(pol.Detail, "the exception user "+w.plain.Name+" --to "+doctorServer+" --port 25") {
			t.Errorf("policy check after the exception = %+v, want ok, naming it", pol)
		}
		w.expectReach(&w.plain, doctorServer+":25")
	})

	t.Run("an ordinary user is refused: the restriction works", func(t *testing.T) {
		_, c := w.doctor(t, to25)
		if pol := c[doctor.NamePolicy]; !pol.OK || !strings.Contains(pol.Detail, "is refused by smtpguard connecting to "+doctorServer+" port 25") {
			t.Errorf("policy check without --user = %+v, want ok: nobody is refused", pol)
		}
	})
}

func TestPrivilegedDoctorReportsStoppedDaemonAndMTA(t *testing.T) {
	w := newDoctorWorld(t)
	w.sgOK("enable", "--backend", "nft")
	stoppedDaemon := doctor.Daemon(false, false, 0)
	stoppedDaemon.Name = doctor.NameDaemon

	// Nothing runs in the client namespace: no daemon, and no MTA on
	// 127.0.0.1:25.
	_, c := w.doctor(t)
	if d := c[doctor.NameDaemon]; d != stoppedDaemon {
		t.Errorf("daemon check with no daemon = %+v, want %+v", d, stoppedDaemon)
	}
	smtp := c[doctor.NameMTASMTP]
	if smtp.OK || !strings.HasPrefix(smtp.Detail, "nothing accepts connections on 127.0.0.1:25 (connection refused)") ||
		!strings.HasSuffix(smtp.Fix, ", and make sure it listens on 127.0.0.1:25") {
		t.Errorf("mta-smtp check with no MTA = %+v, want a failure with its fix", smtp)
	}
	if m := c[doctor.NameMTA]; !m.OK && m.Fix == "" {
		t.Errorf("mta check = %+v: a failure without a fix", m)
	}
	if k := c[doctor.NameKernel]; !k.OK {
		t.Errorf("kernel check = %+v, want in sync", k)
	}

	// An MTA greets on loopback and the daemon runs: both pass.
	testutil.ListenTCP(t, w.client, "127.0.0.1:25")
	d := w.startDaemon(t)
	w.waitUntil(t, "the daemon records blocked attempts", 5*time.Second, func() bool {
		_, c := w.doctor(t)
		return c[doctor.NameDaemon].OK
	})
	_, c = w.doctor(t)
	if smtp := c[doctor.NameMTASMTP]; !smtp.OK || smtp.Detail != "127.0.0.1:25 greets: "+strings.TrimSpace(testutil.Banner("127.0.0.1:25")) {
		t.Errorf("mta-smtp check with a greeting MTA = %+v, want ok", smtp)
	}
	if d := c[doctor.NameDaemon]; !strings.HasSuffix(d.Detail, "and records blocked attempts") {
		t.Errorf("daemon check with the daemon running = %+v", d)
	}

	// The daemon stops: doctor says so again, with the fix.
	d.Stop()
	if _, c := w.doctor(t); c[doctor.NameDaemon] != stoppedDaemon {
		t.Errorf("daemon check after the daemon stopped = %+v, want %+v", c[doctor.NameDaemon], stoppedDaemon)
	}
}
