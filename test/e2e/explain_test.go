//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// Explain mode with the real clients scripts use, from Debian's packages
// (swaks; PHP's PHPMailer, libphp-phpmailer), against a server in the
// server namespace: a blocked client's own output carries the responder's
// 554 5.7.1 line with the user and a reference the administrator finds in
// "events --ref", whose record names the client process.

// phpMailerScript sends one message with PHPMailer as a web application
// would, printing PHPMailer's error on failure; SMTPDebug 2 is what such
// scripts turn on to find out why: it logs the server's replies.
const phpMailerScript = `<?php
require '/usr/share/php/libphp-phpmailer/autoload.php';
use PHPMailer\PHPMailer\PHPMailer;
use PHPMailer\PHPMailer\SMTP;
$m = new PHPMailer(true);
$m->isSMTP();
$m->Host = $argv[1];
$m->Port = (int)$argv[2];
$m->SMTPAutoTLS = false;
$m->Timeout = 5;
$m->SMTPDebug = SMTP::DEBUG_SERVER;
$m->Debugoutput = 'error_log';
$m->setFrom('script@example.com');
$m->addAddress('someone@example.net');
$m->Subject = 'test';
$m->Body = 'test';
try {
	$m->send();
	echo "sent\n";
} catch (Exception $e) {
	fwrite(STDERR, "Mailer Error: " . $m->ErrorInfo . "\n");
	exit(1);
}
`

var refPattern = regexp.MustCompile(`reference (sg-[0-9a-f]{10})`)

// clientRun is one client program's run.
type clientRun struct {
	pid    int
	code   int
	output string // stdout and stderr
	took   time.Duration
}

// runClient runs argv as u in network namespace ns (and, with cg, as a
// process of that cgroup from its first instruction), bounded in time.
func runClient(t *testing.T, cg *testutil.Cgroup, ns *testutil.NetNS, u *testutil.User, argv ...string) clientRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{"--net=" + ns.Path(), "-S", strconv.Itoa(int(u.UID)), "-G", strconv.Itoa(int(u.GID)), "--"}
	cmd := exec.CommandContext(ctx, "nsenter", append(args, argv...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp", "LANG=C"}
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	var err error
	if cg != nil {
		err = cg.Start(cmd)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	r := clientRun{pid: cmd.Process.Pid}
	err = cmd.Wait()
	r.took, r.output = time.Since(start), out.String()
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", argv, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%v did not end within 30s:\n%s", argv, r.output)
	}
	return r
}

func swaks(host string, port int) []string {
	return []string{"swaks", "--server", host, "--port", strconv.Itoa(port), "--from", "script@example.com",
		"--to", "someone@example.net", "--timeout", "5", "--helo", "client.example"}
}

func phpMailer(t *testing.T, host string, port int) []string {
	t.Helper()
	// Not under t.TempDir, whose parent only root may enter.
	dir, err := os.MkdirTemp("", "smtpguard-php-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	script := filepath.Join(dir, "send.php")
	if err := os.WriteFile(script, []byte(phpMailerScript), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{"php", "-n", "-d", "error_log=", script, host, strconv.Itoa(port)}
}

func needClients(t *testing.T) {
	t.Helper()
	for _, f := range []string{"/usr/bin/swaks", "/usr/bin/php", "/usr/share/php/libphp-phpmailer/autoload.php"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s is missing: install swaks, php-cli and libphp-phpmailer (make test-deps does)", f)
		}
	}
}

// explainedEvent is an events --json record with what explain mode adds.
type explainedEvent struct {
	UID         uint32 `json:"uid"`
	User        string `json:"user"`
	Destination string `json:"destination"`
	Port        int    `json:"port"`
	Count       int    `json:"count"`
	Action      string `json:"action"`
	Ref         string `json:"ref"`
	PID         int    `json:"pid"`
	Comm        string `json:"comm"`
	Cmdline     string `json:"cmdline"`
}

// explainCase is one client's blocked attempt and what it must show.
type explainCase struct {
	name   string
	argv   []string
	dst    string // the destination the event names
	port   int
	comm   string
	inArgs string // a piece of the command line
}

func explainCases(t *testing.T) []explainCase {
	return []explainCase{
		{"swaks IPv4 port 25", swaks("192.0.2.2", 25), "192.0.2.2", 25, "swaks", "--server 192.0.2.2"},
		{"swaks IPv6 port 587", swaks("2001:db8::2", 587), "2001:db8::2", 587, "swaks", "--server 2001:db8::2"},
		{"swaks IPv4-mapped IPv6 port 2525", swaks("::ffff:192.0.2.2", 2525), "192.0.2.2", 2525, "swaks", "--server ::ffff:192.0.2.2"},
		{"PHPMailer IPv4 port 587", phpMailer(t, "192.0.2.2", 587), "192.0.2.2", 587, "php", "send.php 192.0.2.2 587"},
		{"PHPMailer IPv6 port 2525", phpMailer(t, "[2001:db8::2]", 2525), "2001:db8::2", 2525, "php", "send.php [2001:db8::2] 2525"},
	}
}

// checkExplained runs each case as u and checks the client's output and
// the event its reference finds; sg runs smtpguard in the world.
func checkExplained(t *testing.T, cg *testutil.Cgroup, ns *testutil.NetNS, u *testutil.User, sg func(...string) cmdResult) {
	t.Helper()
	for _, c := range explainCases(t) {
		t.Run(c.name, func(t *testing.T) {
			r := runClient(t, cg, ns, u, c.argv...)
			if r.code == 0 {
				t.Fatalf("%s as %s succeeded, want it refused:\n%s", c.name, u.Name, r.output)
			}
			for _, want := range []string{"554 5.7.1", "user " + u.Name, fmt.Sprintf("port %d", c.port), "localhost:25"} {
				if !strings.Contains(r.output, want) {
					t.Errorf("%s's output lacks %q:\n%s", c.name, want, r.output)
				}
			}
			m := refPattern.FindStringSubmatch(r.output)
			if m == nil {
				t.Fatalf("%s's output names no reference:\n%s", c.name, r.output)
			}
			ref := m[1]
			t.Logf("%s's output:\n%s", c.name, r.output)
			var evs []explainedEvent
			deadline := time.Now().Add(10 * time.Second)
			for {
				res := sg("events", "--json", "--ref", ref)
				if res.code == 0 {
					if err := json.Unmarshal([]byte(res.stdout), &evs); err != nil {
						t.Fatalf("events --json --ref %s: %v: %s", ref, err, res.stdout)
					}
					if len(evs) > 0 && evs[0].Count > 0 {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("events --ref %s found %+v within 10s (last: exit %d, %s), want the attempt", ref, evs, res.code, res.stderr)
				}
				time.Sleep(100 * time.Millisecond)
			}
			e := evs[0]
			if e.UID != u.UID || e.User != u.Name || e.Destination != c.dst || e.Port != c.port || e.Action != "explained" || e.Ref != ref {
				t.Errorf("event of %s = %+v, want uid %d user %s to %s port %d, action explained, ref %s", ref, e, u.UID, u.Name, c.dst, c.port, ref)
			}
			if e.PID != r.pid || e.Comm != c.comm || !strings.Contains(e.Cmdline, c.inArgs) {
				t.Errorf("event names process %d %q %q, want the client: pid %d, comm %q, a command line with %q", e.PID, e.Comm, e.Cmdline, r.pid, c.comm, c.inArgs)
			}
		})
	}
}

// checkImplicitTLSRefused: 465 is refused at once, by both clients.
func checkImplicitTLSRefused(t *testing.T, cg *testutil.Cgroup, ns *testutil.NetNS, u *testutil.User) {
	t.Helper()
	for _, argv := range [][]string{swaks("192.0.2.2", 465), phpMailer(t, "[2001:db8::2]", 465)} {
		r := runClient(t, cg, ns, u, argv...)
		if r.code == 0 || strings.Contains(r.output, "5.7.1") || r.took > 3*time.Second {
			t.Errorf("%s to port 465: exit %d after %v, want refused at once without an SMTP reply:\n%s", argv[0], r.code, r.took, r.output)
		}
		if !strings.Contains(strings.ToLower(r.output), "refused") && !strings.Contains(r.output, "not permitted") {
			t.Errorf("%s to port 465 says:\n%s\nwant a refused connection", argv[0], r.output)
		}
	}
}

// checkRefusedLikeReject: no responder, so plain-text ports are refused
// as in reject mode, at once.
func checkRefusedLikeReject(t *testing.T, cg *testutil.Cgroup, ns *testutil.NetNS, u *testutil.User) {
	t.Helper()
	for _, argv := range [][]string{swaks("192.0.2.2", 25), phpMailer(t, "[2001:db8::2]", 587)} {
		r := runClient(t, cg, ns, u, argv...)
		if r.code == 0 || strings.Contains(r.output, "5.7.1") || r.took > 3*time.Second ||
			!strings.Contains(strings.ToLower(r.output), "refused") && !strings.Contains(r.output, "not permitted") {
			t.Errorf("%s without a daemon: exit %d after %v, want refused at once as in reject mode:\n%s", argv[0], r.code, r.took, r.output)
		}
		t.Logf("%s without a daemon:\n%s", argv[0], r.output)
	}
}

// waitResponder waits until the daemon's responder answers in ns.
func waitResponder(t *testing.T, w *world, cg *testutil.Cgroup, ns *testutil.NetNS, port int) {
	t.Helper()
	addr := testutil.HostPort("127.0.0.1", port)
	w.waitUntil(t, "the explain responder answers", 10*time.Second, func() bool {
		var rs []testutil.ConnectResult
		if cg != nil {
			rs = testutil.ConnectAsIn(t, cg, ns, nil, addr)
		} else {
			rs = testutil.ConnectAs(t, ns, nil, addr)
		}
		return rs[0].OK && strings.HasPrefix(rs[0].Banner, "554 5.7.1 ")
	})
}

func TestPrivilegedExplainModeNft(t *testing.T) {
	needClients(t)
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	w.sgOK("allow", "group", w.group)
	w.sgOK("set", "ports", "25,465,587,2525")
	w.sgOK("set", "mode", "explain")
	if st := w.status(); st.Mode != "explain" || st.Kernel.State != "in sync" {
		t.Fatalf("status = %+v, want explain mode in sync", st)
	}
	t.Run("without a daemon explain refuses as reject", func(t *testing.T) {
		checkRefusedLikeReject(t, nil, w.client, &w.plain)
	})

	// A port of the daemon's choosing: the rules the CLI applied (the
	// default port) are converged to it.
	const port = 12025
	w.startDaemon(t, "--explain-port", strconv.Itoa(port))
	waitResponder(t, w, nil, w.client, port)
	if !strings.Contains(w.kernelTable(), fmt.Sprintf("redirect to :%d", port)) {
		t.Fatalf("the daemon did not converge the rules to its --explain-port %d:\n%s", port, w.kernelTable())
	}
	if st := w.status(); st.Kernel.State != "in sync" {
		t.Errorf("status with the daemon on port %d: kernel %q, want in sync", port, st.Kernel.State)
	}
	t.Run("a blocked client shows why, and the reference finds its process", func(t *testing.T) {
		w.t = t
		checkExplained(t, nil, w.client, &w.plain, w.sg)
	})
	t.Run("events --ref prints the process", func(t *testing.T) {
		w.t = t
		r := runClient(t, nil, w.client, &w.plain, swaks("192.0.2.3", 25)...)
		m := refPattern.FindStringSubmatch(r.output)
		if m == nil {
			t.Fatalf("no reference in:\n%s", r.output)
		}
		var out string
		w.waitUntil(t, "events --ref shows the attempt", 10*time.Second, func() bool {
			res := w.sg("events", "--ref", m[1])
			out = res.stdout
			return res.code == 0 && strings.Contains(out, "process ")
		})
		for _, want := range []string{"reference " + m[1], w.plain.Name, "192.0.2.3 port 25", fmt.Sprintf("process %d (swaks)", r.pid)} {
			if !strings.Contains(out, want) {
				t.Errorf("events --ref %s lacks %q:\n%s", m[1], want, out)
			}
		}
		if res := w.sg("events", "--ref", "sg-0000000000"); res.code != 1 || !strings.Contains(res.stderr, "no attempt recorded") {
			t.Errorf("events --ref of an unknown reference: exit %d, %q; want 1 and a clear message", res.code, res.stderr)
		}
	})
	t.Run("implicit TLS is refused at once", func(t *testing.T) {
		w.t = t
		checkImplicitTLSRefused(t, nil, w.client, &w.plain)
		w.expectBlocked(&w.plain, remote(465)...)
	})
	t.Run("a flood is bounded: beyond 32 sessions at once the rest are closed and counted", func(t *testing.T) {
		w.t = t
		const flood = 100
		var conns []net.Conn
		closeAll := func() {
			for _, c := range conns {
				c.Close()
			}
			conns = nil
		}
		t.Cleanup(closeAll)
		err := w.client.Do(func() error {
			for range flood {
				c, err := net.DialTimeout("tcp", testutil.HostPort("127.0.0.1", port), 2*time.Second)
				if err != nil {
					return err
				}
				conns = append(conns, c)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("open %d connections to the responder: %v", flood, err)
		}
		w.waitUntil(t, "the responder closes and counts what is beyond its bound", 10*time.Second, func() bool {
			m, err := w.metrics()
			return err == nil && m["smtpguard_explain_dropped_total"] >= flood-32
		})
		closeAll()
		// Freed at once: a blocked client is explained again.
		w.waitUntil(t, "a blocked client is explained after the flood", 10*time.Second, func() bool {
			r := runClient(t, nil, w.client, &w.plain, swaks("192.0.2.3", 587)...)
			return strings.Contains(r.output, "554 5.7.1")
		})
	})
	t.Run("root and allowed users reach the server", func(t *testing.T) {
		w.t = t
		w.expectReach(nil, remote(25)...)
		w.expectReach(&w.supp, append(remote(25), remote(465)...)...)
	})
	w.t = t
}

func TestPrivilegedExplainModeBPF(t *testing.T) {
	needClients(t)
	w := newWorldFor(t, "bpf")
	w.sgOK("enable", "--backend", "bpf", "--cgroup", w.cg.Path)
	w.sgOK("allow", "group", w.group)
	w.sgOK("set", "ports", "25,465,587,2525")
	w.sgOK("set", "mode", "explain")
	t.Run("without a daemon explain refuses as reject", func(t *testing.T) {
		checkRefusedLikeReject(t, w.cg, w.client, &w.plain)
	})

	logs := &strings.Builder{}
	cmd := w.command("serve", "--listen", metricsAddr, "--verify-interval", "1s", "--cgroup", w.cg.Path)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start serve: %v", err)
	}
	d := testutil.Watch(cmd)
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	waitResponder(t, w, w.cg, w.client, policy.DefaultExplainPort)
	t.Run("a blocked client shows why, and the reference finds its process", func(t *testing.T) {
		w.t = t
		checkExplained(t, w.cg, w.client, &w.plain, w.sg)
	})
	t.Run("implicit TLS is refused at once", func(t *testing.T) {
		w.t = t
		checkImplicitTLSRefused(t, w.cg, w.client, &w.plain)
	})
	t.Run("allowed users reach the server", func(t *testing.T) {
		w.t = t
		w.expectReach(&w.supp, append(remote(25), remote(465)...)...)
	})
	w.t = t
}
