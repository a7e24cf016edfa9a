package doctor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/conflicts"
	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/policy"
)

func TestRunKeepsOrderAndBoundsSteps(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	steps := []Step{
		// The first step answers last: order is the steps', not the answers'.
		{Name: "slow", Run: func(ctx context.Context) Check {
			time.Sleep(50 * time.Millisecond)
			return Check{OK: true, Detail: "slow but fine", Fix: "dropped: ok checks have no fix"}
		}},
		{Name: "fails", Run: func(context.Context) Check { return Check{Detail: "broken", Fix: "mend it"} }},
		{Name: "honours its context", Run: func(ctx context.Context) Check {
			<-ctx.Done()
			return Check{Detail: "gave up: " + ctx.Err().Error(), Fix: "wait less"}
		}},
		{Name: "hangs", Run: func(context.Context) Check { <-release; return Check{OK: true} }},
		{Name: "fast", Run: func(context.Context) Check { return Check{OK: true, Detail: "fine"} }},
	}
	start := time.Now()
	got := Run(context.Background(), 200*time.Millisecond, steps)
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Run took %v with a 200ms bound, want it not to wait for a hung step", el)
	}
	want := Report{OK: false, Checks: []Check{
		{Name: "slow", OK: true, Detail: "slow but fine"},
		{Name: "fails", Detail: "broken", Fix: "mend it"},
		{Name: "honours its context", Detail: "gave up: context deadline exceeded", Fix: "wait less"},
		{Name: "hangs", Detail: "did not finish within 200ms", Fix: "something it asks does not answer in time: run doctor again with a longer --timeout"},
		{Name: "fast", OK: true, Detail: "fine"},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Run() (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"fails", "honours its context", "hangs"}, got.Failed()); diff != "" {
		t.Errorf("Failed() (-want +got):\n%s", diff)
	}
}

func TestRunAllPass(t *testing.T) {
	got := Run(context.Background(), time.Second, []Step{{Name: "a", Run: func(context.Context) Check { return Check{OK: true} }}})
	if !got.OK || len(got.Failed()) != 0 {
		t.Errorf("Run() = %+v, want OK", got)
	}
}

func TestWriteText(t *testing.T) {
	tests := []struct {
		name string
		rep  Report
		want string
	}{
		{"a failure with its fix", Report{Checks: []Check{
			{Name: "policy", OK: true, Detail: "fine"},
			{Name: "upstream", Detail: "no answer", Fix: "ask the provider"},
		}}, "ok    policy    fine\n" +
			"FAIL  upstream  no answer\n" +
			"                fix: ask the provider\n" +
			"1 of 2 checks failed: upstream\n"},
		{"all pass", Report{OK: true, Checks: []Check{{Name: "kernel", OK: true, Detail: "in sync"}}},
			"ok    kernel  in sync\nall 1 checks passed\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.rep.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, b.String()); diff != "" {
				t.Errorf("WriteText (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want failure
	}{
		{&net.OpError{Op: "dial", Err: &net.DNSError{IsTimeout: true}}, failTimeout},
		{fmt.Errorf("dial: %w", context.DeadlineExceeded), failTimeout},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, failRefused},
		{&net.OpError{Op: "dial", Err: syscall.ECONNRESET}, failRefused},
		{&net.OpError{Op: "dial", Err: syscall.EHOSTUNREACH}, failUnreachable},
		{&net.OpError{Op: "dial", Err: syscall.ENETUNREACH}, failUnreachable},
		{&net.OpError{Op: "dial", Err: syscall.EPERM}, failDenied},
		{errors.New("something else"), failOther},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("classify(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// listen serves handle on a loopback port until the test ends.
func listen(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

var realDial DialFunc = (&net.Dialer{}).DialContext

// hangingDial stands for a network that drops SYNs: it answers when the
// context ends.
func hangingDial(ctx context.Context, network, addr string) (net.Conn, error) {
	<-ctx.Done()
	return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
}

func TestUpstream(t *testing.T) {
	open := netip.MustParseAddrPort(listen(t, func(net.Conn) {}))
	closed := netip.MustParseAddrPort(closedPort(t))
	const notUs = "not smtpguard, which never restricts root"
	tests := []struct {
		name   string
		dial   DialFunc
		host   string
		addrs  []netip.Addr
		port   uint16
		ok     bool
		detail string // a part of it
		fix    string
	}{
		{"reachable", realDial, "127.0.0.1", []netip.Addr{open.Addr()}, open.Port(), true, "root connects to 127.0.0.1 port", ""},
		{"dropped on the way: the provider's port 25 block", hangingDial, "mx.example.net", []netip.Addr{netip.MustParseAddr("192.0.2.25")}, 25, false,
			"root's connection to 192.0.2.25 port 25 (mx.example.net) got no answer within 100ms: the network upstream drops it (" + notUs + ")",
			"your provider blocks outbound port 25: ask them to unblock it, or relay through a smarthost on 587/2525"},
		{"dropped, another port", hangingDial, "192.0.2.25", []netip.Addr{netip.MustParseAddr("192.0.2.25")}, 587, false,
			"got no answer within 100ms",
			"the network upstream blocks outbound port 587: ask your provider to unblock it, or relay through a smarthost on another port"},
		{"reset", realDial, "127.0.0.1", []netip.Addr{closed.Addr()}, closed.Port(), false,
			"was refused at once (connection refused): nothing listens there, or the network upstream resets it (" + notUs + ")",
			fmt.Sprintf("make sure 127.0.0.1 accepts connections on port %d; if it does, the network upstream blocks outbound port %d", closed.Port(), closed.Port())},
		// Only 127.0.0.1 listens on the port: 127.0.0.2 stands for a host's
		// address that refuses.
		{"one address of several connects", realDial, "localhost", []netip.Addr{netip.MustParseAddr("127.0.0.2"), open.Addr()}, open.Port(), true,
			fmt.Sprintf("root connects to 127.0.0.1 port %d (localhost)", open.Port()), ""},
		{"no address", realDial, "mx.example.net", nil, 25, false, "mx.example.net has no address", "check the host name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Upstream(context.Background(), tt.dial, tt.host, tt.addrs, tt.port, 100*time.Millisecond)
			if c.OK != tt.ok || !strings.Contains(c.Detail, tt.detail) || !strings.HasPrefix(c.Fix, tt.fix) || c.OK && c.Fix != "" {
				t.Errorf("Upstream() = %+v\nwant ok %v, detail with %q, fix %q", c, tt.ok, tt.detail, tt.fix)
			}
		})
	}
}

func TestLocalSMTP(t *testing.T) {
	greets := listen(t, func(c net.Conn) { c.Write([]byte("220 mail.example.net ESMTP Exim 4.96\r\n")) })
	busy := listen(t, func(c net.Conn) { c.Write([]byte("421 too many connections\r\n")) })
	silent := listen(t, func(c net.Conn) { time.Sleep(300 * time.Millisecond) })
	closed := closedPort(t)
	const start = "start the MTA: systemctl start exim4"
	tests := []struct {
		name   string
		addr   string
		ok     bool
		detail string
		fix    string
	}{
		{"greets", greets, true, greets + " greets: 220 mail.example.net ESMTP Exim 4.96", ""},
		{"refuses", busy, false, busy + ` answers "421 too many connections" instead of a 220 greeting`, "see the MTA's log"},
		{"silent", silent, false, silent + " accepts connections but sends no greeting (timed out)", "the MTA is overloaded or hung"},
		{"stopped", closed, false, "nothing accepts connections on " + closed + " (connection refused)", start + ", and make sure it listens on " + closed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := LocalSMTP(context.Background(), realDial, tt.addr, start, 200*time.Millisecond)
			if c.OK != tt.ok || !strings.HasPrefix(c.Detail, tt.detail) || !strings.HasPrefix(c.Fix, tt.fix) {
				t.Errorf("LocalSMTP(%s) = %+v\nwant ok %v, detail %q..., fix %q...", tt.addr, c, tt.ok, tt.detail, tt.fix)
			}
		})
	}
}

func TestPolicyCheck(t *testing.T) {
	remote := netip.MustParseAddr("192.0.2.25")
	blocked := engine.Decision{UID: 33, User: "www-data", Address: remote, Port: 25, Enabled: true,
		Decision: policy.Decision{Verdict: policy.VerdictReject, Rule: policy.RuleBlock}, Why: "the block rule (mode reject): refused"}
	allowed := blocked
	allowed.Decision, allowed.Why = policy.Decision{Verdict: policy.VerdictAccept, Rule: policy.RuleAllowedUID}, "allowed user www-data"
	disabled := blocked
	disabled.Enabled, disabled.Why = false, "the restriction is disabled: nothing refuses it"
	logged := blocked
	logged.Decision = policy.Decision{Verdict: policy.VerdictLog, Rule: policy.RuleBlock}
	otherPort := allowed
	otherPort.Port, otherPort.Decision = 2525, policy.Decision{Verdict: policy.VerdictAccept, Rule: policy.RuleOtherPort}
	heldRefused := blocked
	heldRefused.Held, heldRefused.HoldRefuses = &engine.HeldUser{User: "www-data", UID: 33, Reason: "burst"}, true
	heldRefused.Why = "www-data is on hold since 2026-12-01 10:00:00 UTC, until released (burst): its allowances and exceptions are suspended, so the block rule"
	named := Target{Host: "mx.example.net", Port: 25}
	ordinary := Target{Ordinary: true, Host: "mx.example.net", Port: 25}
	tests := []struct {
		name   string
		target Target
		ds     []engine.Decision
		want   Check
	}{
		{"a named user refused: which rule, and how to send", named, []engine.Decision{blocked}, Check{
			Detail: "smtpguard refuses www-data (uid 33) connecting to 192.0.2.25 (mx.example.net) port 25: the block rule (mode reject): refused",
			Fix:    "send through the local MTA on localhost:25 instead, or let this user reach it: smtpguard allow user www-data --to mx.example.net --port 25"}},
		{"a named user held", named, []engine.Decision{heldRefused}, Check{
			Detail: "smtpguard refuses www-data (uid 33) connecting to 192.0.2.25 (mx.example.net) port 25: www-data is on hold since 2026-12-01 10:00:00 UTC, until released (burst): its allowances and exceptions are suspended, so the block rule",
			Fix:    "once the account is clean (smtpguard events shows what it tried), end the hold: smtpguard release user www-data"}},
		{"a named user allowed", named, []engine.Decision{allowed}, Check{OK: true,
			Detail: "www-data (uid 33) may connect to 192.0.2.25 (mx.example.net) port 25: allowed user www-data"}},
		{"one refused address of several fails", named, []engine.Decision{allowed, blocked}, Check{
			Detail: "smtpguard refuses www-data (uid 33) connecting to 192.0.2.25 (mx.example.net) port 25: the block rule (mode reject): refused",
			Fix:    "send through the local MTA on localhost:25 instead, or let this user reach it: smtpguard allow user www-data --to mx.example.net --port 25"}},
		{"an ordinary user refused is the point", ordinary, []engine.Decision{blocked}, Check{OK: true,
			Detail: "an ordinary user, www-data (uid 33), is refused by smtpguard connecting to 192.0.2.25 (mx.example.net) port 25: the block rule (mode reject): refused"}},
		{"an ordinary user let through while disabled", ordinary, []engine.Decision{disabled}, Check{
			Detail: "an ordinary user, www-data (uid 33), can connect to 192.0.2.25 (mx.example.net) port 25 directly: the restriction is disabled: nothing refuses it",
			Fix:    "enable the restriction: smtpguard enable"}},
		{"log mode", ordinary, []engine.Decision{logged}, Check{
			Detail: "an ordinary user, www-data (uid 33), can connect to 192.0.2.25 (mx.example.net) port 25 directly: the block rule (mode reject): refused",
			Fix:    "mode log only records such connections: once the events show no legitimate direct sender, run smtpguard set mode reject"}},
		{"a port left open", Target{Ordinary: true, Host: "mx.example.net", Port: 2525}, []engine.Decision{otherPort}, Check{
			Detail: "an ordinary user, www-data (uid 33), can connect to 192.0.2.25 (mx.example.net) port 2525 directly: allowed user www-data",
			Fix:    "restrict this port too: smtpguard set ports with 2525 added to the ports listed"}},
		{"any remote server", Target{Port: 25}, []engine.Decision{{UID: 1001, Port: 25, Enabled: true,
			Decision: policy.Decision{Verdict: policy.VerdictReject, Rule: policy.RuleBlock}, Why: "the block rule"}}, Check{
			Detail: "smtpguard refuses uid 1001 connecting to a remote server port 25: the block rule",
			Fix:    "send through the local MTA on localhost:25 instead, or let this user reach it: smtpguard allow user 1001 --to HOST --port 25"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Policy(tt.target, tt.ds)); diff != "" {
				t.Errorf("Policy() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSystemChecks(t *testing.T) {
	grants := []policy.Grant{{UID: 0, User: "root"}, {UID: 101, User: "Debian-exim"}}
	tests := []struct {
		name string
		got  Check
		ok   bool
		fix  string
	}{
		{"kernel in sync", Kernel(engine.Kernel{State: "in sync"}), true, ""},
		{"kernel disabled", Kernel(engine.Kernel{State: "not enforcing"}), true, ""},
		{"kernel drift", Kernel(engine.Kernel{State: "drift", Problems: []string{"uid set differs"}}), false, "run smtpguard enable to repair them"},
		{"kernel unknown", Kernel(engine.Kernel{State: "unknown", Error: "permission denied"}), false, "run doctor as root"},
		{"kernel leftovers", Kernel(engine.Kernel{State: engine.KernelLeftovers, Fix: "run 'smtpguard disable'"}), false, "run 'smtpguard disable'"},
		{"daemon stopped", Daemon(false, false, 0), false, "start it: systemctl start smtpguard"},
		{"daemon deaf", Daemon(true, false, 42), false, "see why in its log"},
		{"daemon fine", Daemon(true, true, 42), true, ""},
		{"no MTA", MTA(mta.Info{MTA: "none"}, grants), false, "install an MTA"},
		{"MTA stopped", MTA(mta.Info{MTA: "exim", Installed: true, Users: []string{"Debian-exim"}}, grants), false, "start the MTA: systemctl start exim4"},
		{"MTA without its account", MTA(mta.Info{MTA: "postfix", Installed: true, Running: true}, grants), false, "allow the account the MTA sends as"},
		{"MTA not allowed", MTA(mta.Info{MTA: "postfix", Installed: true, Running: true, Users: []string{"postfix"}}, grants), false, "allow it: smtpguard allow user postfix"},
		{"MTA fine", MTA(mta.Info{MTA: "exim", Installed: true, Running: true, Users: []string{"Debian-exim"}}, grants), true, ""},
		{"no conflicts", Conflicts(nil), true, ""},
		{"conflicts", Conflicts([]conflicts.Conflict{{Tool: "csf", Detail: "SMTP_BLOCK on", Fix: "turn SMTP_BLOCK off"}}), false, "turn SMTP_BLOCK off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got.OK != tt.ok || !strings.HasPrefix(tt.got.Fix, tt.fix) || tt.got.Detail == "" || tt.got.OK && tt.got.Fix != "" {
				t.Errorf("check = %+v, want ok %v and fix %q...", tt.got, tt.ok, tt.fix)
			}
		})
	}
}
