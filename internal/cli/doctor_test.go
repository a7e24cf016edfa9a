//go:build linux

package cli

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/doctor"
	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/remote"
)

// fakeNet is the network doctor sees in these tests: names resolve from a
// table, and each address either greets, is dropped (the dial times out, at
// once: the bound itself is the doctor package's to test), or refuses. Nothing is dialled for real except the loopback
// listener standing for the MTA.
type fakeNet struct {
	names   map[string][]netip.Addr
	greet   map[string]string // addr:port -> greeting; "" connects silently
	dropped map[string]bool   // addr:port
}

func (n *fakeNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if n.dropped[addr] {
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.ErrDeadlineExceeded}
	}
	greeting, ok := n.greet[addr]
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	client, server := net.Pipe()
	go func() {
		server.Write([]byte(greeting))
		server.Close()
	}()
	return client, nil
}

func (n *fakeNet) system(procRoot string) doctor.System {
	return doctor.System{
		Dial: n.dial,
		LookupHost: func(_ context.Context, host string) ([]netip.Addr, error) {
			if a, ok := n.names[host]; ok {
				return a, nil
			}
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		},
		LocalAddrs: func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("203.0.113.10")}, nil },
		Euid:       func() int { return 0 },
		ProcRoot:   procRoot,
	}
}

// doctorHost is a harness with an installed Exim (its binary's file), its
// account, and a fake /proc in which it runs or not.
func doctorHost(t *testing.T, running bool) (*harness, *fakeNet) {
	t.Helper()
	h := newHarness(t)
	for name, content := range map[string]string{"passwd": readmePasswd, "group": readmeGroup} {
		if err := os.WriteFile(filepath.Join(h.dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustFile(t, filepath.Join(h.dir, "root", "usr", "sbin", "exim4"), "")
	proc := filepath.Join(h.dir, "proc")
	if err := os.MkdirAll(proc, 0o755); err != nil {
		t.Fatal(err)
	}
	if running {
		mustFile(t, filepath.Join(proc, "4242", "comm"), "exim4\n")
	}
	n := &fakeNet{
		names:   map[string][]netip.Addr{"mx.example.net": {netip.MustParseAddr("192.0.2.25")}},
		greet:   map[string]string{},
		dropped: map[string]bool{},
	}
	if running {
		n.greet["127.0.0.1:25"] = "220 mail.example.net ESMTP Exim 4.96\r\n"
	}
	h.opts.Doctor = n.system(proc)
	return h, n
}

func mustFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// doctorJSON runs doctor --json and decodes exactly the documented shape.
func (h *harness) doctorJSON(args ...string) (int, doctor.Report, string) {
	h.t.Helper()
	r := h.run(append([]string{"doctor", "--json", "--timeout", "200ms"}, args...)...)
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	var rep doctor.Report
	if err := dec.Decode(&rep); err != nil {
		h.t.Fatalf("doctor --json %v printed %q (stderr %q): %v", args, r.stdout, r.stderr, err)
	}
	return r.code, rep, r.stderr
}

func checkOf(t *testing.T, rep doctor.Report, name string) doctor.Check {
	t.Helper()
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("doctor reports no %q check: %+v", name, rep)
	return doctor.Check{}
}

func TestDoctorJSONShapeAndOrder(t *testing.T) {
	h, _ := doctorHost(t, true)
	h.ok("enable")
	r := h.run("doctor", "--json", "--timeout", "200ms")
	var raw struct {
		OK     *bool            `json:"ok"`
		Checks []map[string]any `json:"checks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil || raw.OK == nil {
		t.Fatalf("doctor --json = %q: %v", r.stdout, err)
	}
	var names []string
	for _, c := range raw.Checks {
		if diff := cmp.Diff([]string{"detail", "fix", "name", "ok"}, slices.Sorted(maps.Keys(c))); diff != "" {
			t.Errorf("check %v keys (-want +got):\n%s", c["name"], diff)
		}
		names = append(names, c["name"].(string))
	}
	want := []string{"policy", "kernel", "daemon", "mta", "mta-smtp", "conflicts", "upstream"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("check names (-want +got):\n%s", diff)
	}
}

func TestDoctorBadInputExits2(t *testing.T) {
	h, _ := doctorHost(t, true)
	for _, args := range [][]string{
		{"--to", "mx.example.net:0"},
		{"--to", "mx.example.net:99999"},
		{"--to", "not a host"},
		{"--to", "[2001:db8::25"},
		{"--user", "nosuchuser"},
		{"--timeout", "0s"},
		{"extra"},
	} {
		r := h.run(append([]string{"doctor"}, args...)...)
		if r.code != ExitUsage || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
			t.Errorf("doctor %v = exit %d, stdout %q, stderr %q; want exit 2, one line on stderr, nothing on stdout", args, r.code, r.stdout, r.stderr)
		}
	}
}

func TestParseDoctorTo(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port uint16
	}{
		{"", "", 25},
		{"mx.example.net", "mx.example.net", 25},
		{"smtp.sendgrid.net:587", "smtp.sendgrid.net", 587},
		{"192.0.2.25:2525", "192.0.2.25", 2525},
		{"2001:db8::25", "2001:db8::25", 25},
		{"[2001:db8::25]", "2001:db8::25", 25},
		{"[2001:db8::25]:465", "2001:db8::25", 465},
	}
	for _, tt := range tests {
		host, port, err := parseDoctorTo(tt.in)
		if err != nil || host != tt.host || port != tt.port {
			t.Errorf("parseDoctorTo(%q) = %q, %d, %v; want %q, %d", tt.in, host, port, err, tt.host, tt.port)
		}
	}
}

// The point of doctor: a provider that drops port 25 is told apart from
// smtpguard's own refusal, which concerns the user and names its rule.
func TestDoctorTellsProviderBlockFromSmtpguards(t *testing.T) {
	h, n := doctorHost(t, true)
	h.ok("enable")

	n.dropped["192.0.2.25:25"] = true
	code, rep, stderr := h.doctorJSON("--user", "alice", "--to", "mx.example.net")
	if code != ExitFailure || !strings.Contains(stderr, "checks failed: policy, daemon, upstream") {
		t.Errorf("doctor with a dropping provider = exit %d, stderr %q; want 1 naming policy, daemon, upstream", code, stderr)
	}
	up := checkOf(t, rep, "upstream")
	if up.OK || !strings.Contains(up.Detail, "got no answer within 200ms") || !strings.Contains(up.Detail, "not smtpguard, which never restricts root") ||
		up.Fix != "your provider blocks outbound port 25: ask them to unblock it, or relay through a smarthost on 587/2525" {
		t.Errorf("upstream check = %+v, want the provider's port 25 block", up)
	}
	pol := checkOf(t, rep, "policy")
	wantPolicy := doctor.Check{Name: "policy",
		Detail: "smtpguard refuses alice (uid 1001) connecting to 192.0.2.25 (mx.example.net) port 25: the block rule (mode reject): refused by the fake fake; alice is neither allowed nor has an exception for 192.0.2.25 port 25",
		Fix:    "send through the local MTA on localhost:25 instead, or let this user reach it: smtpguard allow user alice --to mx.example.net --port 25"}
	if diff := cmp.Diff(wantPolicy, pol); diff != "" {
		t.Errorf("policy check (-want +got):\n%s", diff)
	}

	// The provider passes port 25: only smtpguard's refusal remains.
	delete(n.dropped, "192.0.2.25:25")
	n.greet["192.0.2.25:25"] = "220 mx.example.net ESMTP\r\n"
	code, rep, _ = h.doctorJSON("--user", "alice", "--to", "mx.example.net")
	if up := checkOf(t, rep, "upstream"); !up.OK || !strings.Contains(up.Detail, "root connects to 192.0.2.25 port 25 (mx.example.net)") {
		t.Errorf("upstream check with the provider passing = %+v, want ok", up)
	}
	if diff := cmp.Diff(wantPolicy, checkOf(t, rep, "policy")); diff != "" || code != ExitFailure {
		t.Errorf("policy check with the provider passing, exit %d (-want +got):\n%s", code, diff)
	}

	// The fix doctor gave works.
	h.ok("allow", "user", "alice", "--to", "192.0.2.25", "--port", "25")
	_, rep, _ = h.doctorJSON("--user", "alice", "--to", "mx.example.net")
	if pol := checkOf(t, rep, "policy"); !pol.OK || !strings.Contains(pol.Detail, "the exception user alice --to 192.0.2.25 --port 25") {
		t.Errorf("policy check after the exception = %+v, want ok, naming the exception", pol)
	}
}

func TestDoctorOrdinaryUser(t *testing.T) {
	h, _ := doctorHost(t, true)
	_, rep, _ := h.doctorJSON()
	pol := checkOf(t, rep, "policy")
	if pol.OK || pol.Fix != "enable the restriction: smtpguard enable" || !strings.Contains(pol.Detail, "an ordinary user, uid 65534,") {
		t.Errorf("policy check while disabled = %+v, want a failure whose fix is enable", pol)
	}
	if up := checkOf(t, rep, "upstream"); !up.OK || !strings.HasPrefix(up.Detail, "not checked: give --to") {
		t.Errorf("upstream check without --to = %+v, want not checked", up)
	}
	h.ok("enable")
	_, rep, _ = h.doctorJSON()
	if pol := checkOf(t, rep, "policy"); !pol.OK || !strings.Contains(pol.Detail, "is refused by smtpguard connecting to a remote server port 25: the block rule") {
		t.Errorf("policy check while enabled = %+v, want ok: ordinary users are refused", pol)
	}
}

func TestDoctorReportsStoppedDaemonAndMTA(t *testing.T) {
	h, _ := doctorHost(t, false)
	h.ok("enable")
	code, rep, _ := h.doctorJSON()
	if code != ExitFailure || rep.OK {
		t.Errorf("doctor with nothing running = exit %d, ok %v; want 1, false", code, rep.OK)
	}
	for name, fix := range map[string]string{
		"daemon":   "start it: systemctl start smtpguard (after smtpguard install-service once), or run smtpguard serve",
		"mta":      "start the MTA: systemctl start exim4",
		"mta-smtp": "start the MTA: systemctl start exim4, and make sure it listens on 127.0.0.1:25",
	} {
		if c := checkOf(t, rep, name); c.OK || c.Fix != fix {
			t.Errorf("%s check = %+v, want a failure with fix %q", name, c, fix)
		}
	}
	if c := checkOf(t, rep, "mta"); c.Detail != "exim is installed but not running: mail handed to it is not delivered" {
		t.Errorf("mta check detail = %q", c.Detail)
	}
	if c := checkOf(t, rep, "kernel"); !c.OK {
		t.Errorf("kernel check = %+v, want in sync", c)
	}
}

// serveFake runs the daemon in-process on the harness's fake backend until
// the test ends, and waits until it records.
func serveFake(t *testing.T, h *harness, b enforce.Backend) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	opts := h.opts
	opts.ServeBackends = func(*slog.Logger, bool) []enforce.Backend { return []enforce.Backend{b} }
	go func() {
		done <- RunWith(ctx, []string{"--state-dir", h.stateDir, "serve", "--listen", ""}, Stdio{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard}, opts)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s")
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if info, err := remote.Ping(ctx, remote.SocketPath(h.stateDir)); err == nil && info.Recording {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not answer on its socket, recording, within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDoctorAllPassExits0(t *testing.T) {
	h, n := doctorHost(t, true)
	n.greet["192.0.2.25:25"] = "220 mx.example.net ESMTP\r\n"
	h.ok("enable")
	h.ok("allow", "user", "alice")
	serveFake(t, h, h.backend)
	r := h.run("doctor", "--user", "alice", "--to", "mx.example.net", "--timeout", "200ms")
	if r.code != ExitOK || r.stderr != "" || !strings.HasSuffix(r.stdout, "all 7 checks passed\n") {
		t.Errorf("doctor on a healthy host = exit %d, stderr %q, stdout:\n%s\nwant exit 0, all passed", r.code, r.stderr, r.stdout)
	}
	if want := "ok    policy     alice (uid 1001) may connect to 192.0.2.25 (mx.example.net) port 25: allowed user alice\n"; !strings.HasPrefix(r.stdout, want) {
		t.Errorf("doctor's first line = %q, want %q", strings.SplitAfter(r.stdout, "\n")[0], want)
	}
}

func TestDoctorUnresolvableHostAndIPv6(t *testing.T) {
	h, n := doctorHost(t, true)
	h.ok("enable")
	code, rep, _ := h.doctorJSON("--user", "alice", "--to", "nowhere.example.net")
	for _, name := range []string{"policy", "upstream"} {
		c := checkOf(t, rep, name)
		if c.OK || !strings.HasPrefix(c.Detail, "cannot resolve nowhere.example.net: ") || c.Fix != "check the host name, and this server's resolver (/etc/resolv.conf)" {
			t.Errorf("%s check for a name that does not resolve = %+v", name, c)
		}
	}
	if code != ExitFailure {
		t.Errorf("doctor for a name that does not resolve: exit %d, want 1 (a runtime failure, not bad input)", code)
	}

	n.greet["[2001:db8::25]:587"] = "220 relay.example.net ESMTP\r\n"
	_, rep, _ = h.doctorJSON("--user", "alice", "--to", "[2001:db8::25]:587")
	if c := checkOf(t, rep, "upstream"); !c.OK || !strings.HasPrefix(c.Detail, "root connects to 2001:db8::25 port 587 in ") {
		t.Errorf("upstream check over IPv6 = %+v, want ok", c)
	}
	if c := checkOf(t, rep, "policy"); c.OK || !strings.HasPrefix(c.Detail, "smtpguard refuses alice (uid 1001) connecting to 2001:db8::25 port 587: ") {
		t.Errorf("policy check over IPv6 = %+v, want alice refused", c)
	}
}
