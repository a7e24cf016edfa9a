//go:build linux

package system

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// buildBinary builds smtpguard as a static binary.
func buildBinary(t *testing.T, ctx context.Context) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "smtpguard")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/smtpguard/smtpguard/cmd/smtpguard")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	return bin
}

// greeting reads the SMTP greeting of addr inside the container.
func (c *container) greeting(ctx context.Context, addr string) (string, net.Conn, error) {
	conn, err := c.dial(ctx, addr)
	if err != nil {
		return "", nil, err
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return "", nil, fmt.Errorf("reading the greeting of %s: %w", addr, err)
	}
	return strings.TrimSpace(line), conn, nil
}

// api calls the daemon's JSON API inside the container.
func (c *container) api(ctx context.Context, token, method, path, body string) (int, string, error) {
	client := &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) { return c.dial(ctx, addr) },
		},
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://127.0.0.1:9725"+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// token creates an admin API token inside.
func (c *container) token(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	var tok struct{ Token string }
	out := c.ok(ctx, "/usr/sbin/smtpguard", "token", "create", name, "--role", "admin", "--json")
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Token == "" {
		t.Fatalf("token create --json = %q: %v", out, err)
	}
	return tok.Token
}

// show is a property of the smtpguard unit.
func (c *container) show(ctx context.Context, prop string) string {
	c.t.Helper()
	return c.ok(ctx, "systemctl", "show", "--property="+prop, "--value", "smtpguard.service")
}

// TestPrivilegedSystemdUnit installs the .deb of `make package` into a
// booted Debian 12 with dpkg and checks what an administrator relies on: the
// package enables and starts the service (which said READY=1 after
// converging), the binary knows the package's version, enforcement works
// from inside, the web API's changes (enable, disable, allow, settings and
// the MTA's limits, with the container's own Exim) work under the unit's
// sandbox, a killed daemon is restarted, a hung daemon is restarted by the
// watchdog, stopping the service leaves the rules in force, and removing
// the package lifts them, stops the service and keeps the state, which
// purging deletes.
func TestPrivilegedSystemdUnit(t *testing.T) {
	testutil.Privileged(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	pkg := makePackage(t, ctx)
	c := boot(t, ctx, cachedRoot(t, ctx, eximRoot), map[string]string{"root/smtpguard.deb": pkg.path})

	// The root has no package lists or network: the .deb must install from
	// what it carries (it depends on nothing; the binary is static).
	if out, err := c.run(ctx, 5*time.Minute, "dpkg", "-i", "/root/smtpguard.deb"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	const unitPath = "/lib/systemd/system/smtpguard.service"
	unit := c.ok(ctx, "cat", unitPath)
	if !strings.Contains(unit, "\nExecStart=/usr/sbin/smtpguard --state-dir /var/lib/smtpguard serve") {
		t.Errorf("the packaged unit does not run the installed binary:\n%s", unit)
	}
	if out, err := c.run(ctx, time.Minute, "systemd-analyze", "verify", unitPath); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify in the container: %v\n%s", err, out)
	}
	if got := c.ok(ctx, "systemctl", "is-enabled", "smtpguard"); got != "enabled" {
		t.Errorf("after dpkg -i: systemctl is-enabled smtpguard = %q, want enabled (postinst)", got)
	}

	t.Run("the binary is the package's version", func(t *testing.T) {
		if got := c.ok(ctx, "dpkg-query", "-W", "-f=${Version}", "smtpguard"); got != pkg.version {
			t.Errorf("dpkg-query Version = %q, want the .deb's %q", got, pkg.version)
		}
		var v map[string]string
		out := c.ok(ctx, "/usr/sbin/smtpguard", "version", "--json")
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("smtpguard version --json = %q: %v", out, err)
		}
		if v["version"] != pkg.describe || v["commit"] != pkg.commit {
			t.Errorf("smtpguard version --json = %v, want version %q and commit %q, from which package version %q was made",
				v, pkg.describe, pkg.commit, pkg.version)
		}
		if text := c.ok(ctx, "/usr/sbin/smtpguard", "version"); !strings.Contains(text, pkg.describe) {
			t.Errorf("smtpguard version = %q, want it to name %q", text, pkg.describe)
		}
	})

	t.Run("active after READY=1", func(t *testing.T) {
		if got := c.show(ctx, "ActiveState"); got != "active" {
			t.Fatalf("ActiveState = %q, want active", got)
		}
		if out, _ := c.run(ctx, time.Minute, "systemctl", "is-active", "smtpguard"); strings.TrimSpace(out) != "active" {
			t.Errorf("systemctl is-active smtpguard = %q", out)
		}
		// STATUS= comes with READY=1 after the first converge.
		if got, want := c.show(ctx, "StatusText"), "kernel rules converged to the stored policy"; got != want {
			t.Errorf("StatusText = %q, want %q", got, want)
		}
		if fi, err := os.Stat(filepath.Join(c.root, "var/lib/smtpguard")); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("state directory: %v, mode %v; want 0700", err, fi.Mode().Perm())
		}
	})

	t.Run("enable enforces", func(t *testing.T) {
		c.ok(ctx, "/usr/sbin/smtpguard", "enable", "--backend", "nft")
		table := c.ok(ctx, "nft", "list", "table", "inet", "smtpguard")
		if !strings.Contains(table, "elements = { 25, 465, 587, 2525 }") {
			t.Errorf("nft list table inet smtpguard inside:\n%s", table)
		}
	})

	t.Run("the web API's changes under the sandbox", func(t *testing.T) {
		// Through the daemon, so the sandboxed process changes the kernel's
		// rules: what the web UI's status, allowed and settings pages do.
		token := c.token(t, ctx, "systemd-test-api")
		call := func(method, path, body string) string {
			t.Helper()
			code, resp, err := c.api(ctx, token, method, path, body)
			if err != nil || code != http.StatusOK {
				t.Fatalf("%s %s %s = %d %s (%v)\njournal:\n%s", method, path, body, code, resp, err,
					c.ok(ctx, "journalctl", "-u", "smtpguard", "--no-pager", "-n", "30"))
			}
			return resp
		}
		table := func() (string, error) { return c.run(ctx, time.Minute, "nft", "list", "table", "inet", "smtpguard") }

		call("POST", "/api/v1/disable", "")
		if out, err := table(); err == nil {
			t.Errorf("after POST /api/v1/disable the table is still there:\n%s", out)
		}
		call("POST", "/api/v1/enable", "")
		if out, err := table(); err != nil || !strings.Contains(out, "elements = { 25, 465, 587, 2525 }") {
			t.Fatalf("after POST /api/v1/enable: %v\n%s", err, out)
		}

		// nobody is uid 65534 in Debian's base-passwd.
		call("POST", "/api/v1/allowed", `{"kind": "user", "name": "nobody"}`)
		if out, _ := table(); !strings.Contains(out, "65534") {
			t.Errorf("after allowing nobody, uid 65534 is not in the table:\n%s", out)
		}
		call("DELETE", "/api/v1/allowed", `{"kind": "user", "name": "nobody"}`)
		if out, _ := table(); strings.Contains(out, "65534") {
			t.Errorf("after revoking nobody, uid 65534 is still in the table:\n%s", out)
		}

		call("PUT", "/api/v1/settings", `{"ports": [25, 465, 587]}`)
		if out, _ := table(); !strings.Contains(out, "elements = { 25, 465, 587 }") || strings.Contains(out, "587, 2525") { // "group 2525" is the NFLOG group
			t.Errorf("after PUT /api/v1/settings ports without 2525:\n%s", out)
		}
		call("PUT", "/api/v1/settings", `{"ports": [25, 465, 587, 2525]}`)
		if out, _ := table(); !strings.Contains(out, "elements = { 25, 465, 587, 2525 }") {
			t.Errorf("after PUT /api/v1/settings back to the defaults:\n%s", out)
		}

		for _, path := range []string{"/api/v1/status", "/api/v1/allowed", "/api/v1/settings", "/api/v1/events", "/api/v1/mta", "/metrics"} {
			call("GET", path, "")
		}
		if audit := call("GET", "/api/v1/audit", ""); !strings.Contains(audit, "api:systemd-test-api") {
			t.Errorf("the audit log does not name the token's changes:\n%s", audit)
		}
	})

	t.Run("mta set under the sandbox", func(t *testing.T) {
		if got := c.ok(ctx, "systemctl", "is-active", "exim4"); got != "active" {
			t.Fatalf("the container's exim4 is %q", got)
		}
		token := c.token(t, ctx, "systemd-test")
		// Back to back, through the daemon, so the sandboxed process edits
		// /etc/exim4 and /var/lib/exim4 and signals Exim.
		for i, max := range []int{7, 2, 3, 2} {
			code, body, err := c.api(ctx, token, "PUT", "/api/v1/mta", fmt.Sprintf(`{"max_connections": %d}`, max))
			if err != nil || code != http.StatusOK {
				t.Fatalf("change %d: PUT /api/v1/mta max %d = %d %s (%v)\njournal:\n%s", i+1, max, code, body, err,
					c.ok(ctx, "journalctl", "-u", "smtpguard", "--no-pager", "-n", "30"))
			}
			if got := c.ok(ctx, "exim4", "-bP", "smtp_accept_max"); got != "smtp_accept_max = "+strconv.Itoa(max) {
				t.Fatalf("change %d: exim4 -bP = %q, want %d", i+1, got, max)
			}
		}
		// The running Exim enforces the last value, 2: a third session is refused.
		var conns []net.Conn
		defer func() {
			for _, conn := range conns {
				conn.Close()
			}
		}()
		for i := range 2 {
			// The reload's own greeting check is a session too, and its
			// Exim child may still be exiting on a loaded machine: a 421
			// then means "not yet", until that child is gone (bounded).
			var g string
			var conn net.Conn
			var err error
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				g, conn, err = c.greeting(ctx, "127.0.0.1:25")
				if err != nil || !strings.HasPrefix(g, "421") || time.Now().After(deadline) {
					break
				}
				conn.Close()
			}
			if err != nil || !strings.HasPrefix(g, "220") {
				t.Fatalf("session %d: greeting %q, %v", i+1, g, err)
			}
			conns = append(conns, conn)
		}
		g, conn, err := c.greeting(ctx, "127.0.0.1:25")
		if err == nil {
			conn.Close()
		}
		if !strings.HasPrefix(g, "421") {
			t.Errorf("third session: greeting %q (%v), want Exim's 421 under max 2", g, err)
		}
	})

	t.Run("mta set of /etc/exim.conf under the sandbox", func(t *testing.T) {
		// RHEL's and cPanel's layout: one file in /etc, which the unit makes
		// writable on its own (ReadWritePaths=-/etc/exim.conf); /etc stays
		// read-only. The daemon manages it through $SMTPGUARD_EXIM_CONFIG.
		c.ok(ctx, "cp", "-p", "/var/lib/exim4/config.autogenerated", "/etc/exim.conf")
		c.ok(ctx, "mkdir", "-p", "/etc/systemd/system/smtpguard.service.d")
		c.ok(ctx, "sh", "-c", "printf '[Service]\\nEnvironment=SMTPGUARD_EXIM_CONFIG=/etc/exim.conf\\n' > /etc/systemd/system/smtpguard.service.d/exim-conf.conf")
		c.ok(ctx, "systemctl", "daemon-reload")
		c.ok(ctx, "systemctl", "restart", "smtpguard")
		t.Cleanup(func() {
			c.run(ctx, time.Minute, "rm", "-r", "/etc/systemd/system/smtpguard.service.d", "/etc/exim.conf")
			c.run(ctx, time.Minute, "systemctl", "daemon-reload")
			c.run(ctx, time.Minute, "systemctl", "restart", "smtpguard")
		})
		token := c.token(t, ctx, "systemd-test-rhel")
		code, body, err := c.api(ctx, token, "PUT", "/api/v1/mta", `{"max_connections": 9}`)
		if err != nil || code != http.StatusOK {
			t.Fatalf("PUT /api/v1/mta for /etc/exim.conf = %d %s (%v)", code, body, err)
		}
		if got := c.ok(ctx, "exim4", "-C", "/etc/exim.conf", "-bP", "smtp_accept_max"); got != "smtp_accept_max = 9" {
			t.Errorf("exim4 -C /etc/exim.conf -bP = %q, want 9", got)
		}
		if left := c.ok(ctx, "sh", "-c", "ls -a /etc /tmp | grep smtpguard- || true"); left != "" {
			t.Errorf("candidate files left behind: %s", left)
		}
	})

	t.Run("SIGKILL restarts it", func(t *testing.T) {
		pid := c.show(ctx, "MainPID")
		restarts := c.show(ctx, "NRestarts")
		c.ok(ctx, "systemctl", "kill", "--signal=SIGKILL", "--kill-whom=main", "smtpguard")
		waitFor(t, 60*time.Second, "systemd to restart the killed daemon", func() bool {
			return c.show(ctx, "NRestarts") != restarts && c.show(ctx, "ActiveState") == "active" && c.show(ctx, "MainPID") != pid
		})
		c.ok(ctx, "nft", "list", "table", "inet", "smtpguard")
	})

	t.Run("a hung daemon is restarted by the watchdog", func(t *testing.T) {
		// The unit's 60 s shortened so the test is quick; the rest is the unit.
		c.ok(ctx, "mkdir", "-p", "/etc/systemd/system/smtpguard.service.d")
		c.ok(ctx, "sh", "-c", "printf '[Service]\\nWatchdogSec=3\\n' > /etc/systemd/system/smtpguard.service.d/watchdog.conf")
		c.ok(ctx, "systemctl", "daemon-reload")
		c.ok(ctx, "systemctl", "restart", "smtpguard")
		t.Cleanup(func() {
			c.run(ctx, time.Minute, "rm", "-r", "/etc/systemd/system/smtpguard.service.d")
			c.run(ctx, time.Minute, "systemctl", "daemon-reload")
		})
		first := c.show(ctx, "WatchdogTimestampMonotonic")
		waitFor(t, 10*time.Second, "the daemon to feed the watchdog", func() bool {
			return c.show(ctx, "WatchdogTimestampMonotonic") != first
		})
		pid := c.show(ctx, "MainPID")
		restarts := c.show(ctx, "NRestarts")
		c.ok(ctx, "systemctl", "kill", "--signal=SIGSTOP", "--kill-whom=main", "smtpguard")
		waitFor(t, 60*time.Second, "the watchdog to restart the stopped daemon", func() bool {
			return c.show(ctx, "NRestarts") != restarts && c.show(ctx, "ActiveState") == "active" && c.show(ctx, "MainPID") != pid
		})
		if j := c.ok(ctx, "journalctl", "-u", "smtpguard", "--no-pager"); !strings.Contains(j, "Watchdog timeout") {
			t.Errorf("journal does not show a watchdog timeout:\n%s", j)
		}
	})

	t.Run("stop leaves the rules in force", func(t *testing.T) {
		c.ok(ctx, "systemctl", "stop", "smtpguard")
		if got := c.show(ctx, "ActiveState"); got != "inactive" {
			t.Errorf("ActiveState after stop = %q, want inactive", got)
		}
		table := c.ok(ctx, "nft", "list", "table", "inet", "smtpguard")
		if !strings.Contains(table, "elements = { 25, 465, 587, 2525 }") {
			t.Errorf("rules after systemctl stop:\n%s", table)
		}
	})

	// Removing the package lifts the restriction (packaging/deb/prerm: with
	// the binary gone nothing could change or lift the rules, and a reboot
	// would drop them anyway), stops the service and keeps the state.
	removed := func(t *testing.T, out string) {
		t.Helper()
		if !strings.Contains(out, "smtpguard: package removed, so the restriction is lifted: SMTP restriction disabled") {
			t.Errorf("dpkg -r did not tell the administrator the restriction was lifted:\n%s", out)
		}
		if out, err := c.run(ctx, time.Minute, "nft", "list", "table", "inet", "smtpguard"); err == nil {
			t.Errorf("after dpkg -r smtpguard's table is still in the kernel:\n%s", out)
		}
		if got := c.show(ctx, "ActiveState"); got != "inactive" {
			t.Errorf("after dpkg -r ActiveState = %q, want inactive", got)
		}
		if got := c.show(ctx, "MainPID"); got != "0" {
			t.Errorf("after dpkg -r MainPID = %s, want no daemon", got)
		}
		for _, gone := range []string{"/usr/sbin/smtpguard", unitPath} {
			if c.exists(ctx, gone) {
				t.Errorf("after dpkg -r %s is still there", gone)
			}
		}
		if !c.exists(ctx, "/var/lib/smtpguard/smtpguard.db") {
			t.Errorf("dpkg -r deleted the state in /var/lib/smtpguard; only purge may")
		}
	}
	var adminToken string

	t.Run("dpkg -r of a running service lifts the rules and keeps the state", func(t *testing.T) {
		c.ok(ctx, "systemctl", "start", "smtpguard")
		c.ok(ctx, "nft", "list", "table", "inet", "smtpguard")
		adminToken = c.token(t, ctx, "systemd-test-reinstall")
		out, err := c.run(ctx, 5*time.Minute, "dpkg", "-r", "smtpguard")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		removed(t, out)
	})

	t.Run("reinstall keeps the state and enforces after enable", func(t *testing.T) {
		if out, err := c.run(ctx, 5*time.Minute, "dpkg", "-i", "/root/smtpguard.deb"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		// postrm masked the unit on remove; postinst unmasks and starts it.
		if got := c.ok(ctx, "systemctl", "is-active", "smtpguard"); got != "active" {
			t.Fatalf("after reinstalling: systemctl is-active smtpguard = %q", got)
		}
		if out, err := c.run(ctx, time.Minute, "nft", "list", "table", "inet", "smtpguard"); err == nil {
			t.Errorf("the reinstalled service enforces before 'smtpguard enable':\n%s", out)
		}
		if code, body, err := c.api(ctx, adminToken, "GET", "/api/v1/status", ""); err != nil || code != http.StatusOK {
			t.Errorf("a token made before dpkg -r: GET /api/v1/status = %d %s (%v), want 200 (state kept)", code, body, err)
		}
		c.ok(ctx, "/usr/sbin/smtpguard", "enable", "--backend", "nft")
		if table := c.ok(ctx, "nft", "list", "table", "inet", "smtpguard"); !strings.Contains(table, "elements = { 25, 465, 587, 2525 }") {
			t.Errorf("after enable on the reinstalled package:\n%s", table)
		}
	})

	t.Run("dpkg -r then dpkg -P removes everything", func(t *testing.T) {
		out, err := c.run(ctx, 5*time.Minute, "dpkg", "-r", "smtpguard")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		removed(t, out)
		if out, err := c.run(ctx, 5*time.Minute, "dpkg", "-P", "smtpguard"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, gone := range []string{"/var/lib/smtpguard", "/etc/systemd/system/smtpguard.service",
			"/etc/systemd/system/multi-user.target.wants/smtpguard.service"} {
			if c.exists(ctx, gone) {
				t.Errorf("after dpkg -P %s is still there", gone)
			}
		}
		if got := c.show(ctx, "LoadState"); got != "not-found" {
			t.Errorf("after dpkg -P LoadState = %q, want not-found", got)
		}
		if out, err := c.run(ctx, time.Minute, "dpkg-query", "-W", "-f=${db:Status-Status}", "smtpguard"); err == nil && strings.TrimSpace(out) != "not-installed" {
			t.Errorf("after dpkg -P dpkg still knows smtpguard: %q", out)
		}
	})
}

// TestPrivilegedSystemdUnitPostfix: on a Postfix host the daemon, inside the
// unit's sandbox, changes Postfix's limits (main.cf, master.cf, postfix
// check) and Postfix really reloads.
func TestPrivilegedSystemdUnitPostfix(t *testing.T) {
	testutil.Privileged(t)
	ctx, cancel := context.WithTimeout(t.Context(), 12*time.Minute)
	defer cancel()
	bin := buildBinary(t, ctx)
	c := boot(t, ctx, cachedRoot(t, ctx, postfixRoot), map[string]string{"usr/sbin/smtpguard": bin})
	// This root gets the unit from install-service (the Exim test's comes
	// from the package): it writes the same unit to /etc/systemd/system.
	out := c.ok(ctx, "/usr/sbin/smtpguard", "install-service")
	if !strings.Contains(out, "/etc/systemd/system/smtpguard.service") {
		t.Errorf("install-service printed %q", out)
	}
	unit := c.ok(ctx, "cat", "/etc/systemd/system/smtpguard.service")
	if !strings.Contains(unit, "\nExecStart=/usr/sbin/smtpguard --state-dir /var/lib/smtpguard serve") {
		t.Errorf("unit does not run the installed binary:\n%s", unit)
	}
	if out, err := c.run(ctx, time.Minute, "systemd-analyze", "verify", "/etc/systemd/system/smtpguard.service"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify in the container: %v\n%s", err, out)
	}
	if got := c.show(ctx, "ActiveState"); got != "active" {
		t.Fatalf("ActiveState = %q, want active", got)
	}
	if got := c.ok(ctx, "systemctl", "is-active", "postfix@-"); got != "active" {
		t.Fatalf("the container's postfix is %q", got)
	}
	reloads := func() int {
		return strings.Count(c.ok(ctx, "journalctl", "--no-pager", "-o", "cat", "-t", "postfix/master"), "reload -- version")
	}
	before := reloads()
	token := c.token(t, ctx, "systemd-test-postfix")
	code, body, err := c.api(ctx, token, "PUT", "/api/v1/mta", `{"max_connections": 7, "max_per_host": 3}`)
	if err != nil || code != http.StatusOK {
		t.Fatalf("PUT /api/v1/mta = %d %s (%v)\njournal:\n%s", code, body, err,
			c.ok(ctx, "journalctl", "-u", "smtpguard", "--no-pager", "-n", "30"))
	}
	if got := c.ok(ctx, "postconf", "-h", "smtpd_client_connection_count_limit"); got != "3" {
		t.Errorf("smtpd_client_connection_count_limit = %q, want 3", got)
	}
	if got := strings.Fields(c.ok(ctx, "postconf", "-M", "smtp/inet")); len(got) < 7 || got[6] != "7" {
		t.Errorf("postconf -M smtp/inet = %q, want maxproc 7", got)
	}
	waitFor(t, 10*time.Second, "postfix's master to log its reload", func() bool { return reloads() > before })
}
