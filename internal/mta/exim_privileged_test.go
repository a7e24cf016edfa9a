//go:build linux

package mta

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// Privileged Exim tests run Debian's real Exim (package exim4-daemon-light)
// without disturbing a system MTA: the package is never installed (it would
// replace a Postfix host's MTA) but unpacked privately (eximFromDeb); a
// system daemon, if the host runs one, is left alone; each test starts its
// own daemon on a private
// configuration, spool, log and pid file, listening on 127.0.0.1:2525 inside
// a network namespace of its own, and kills it by pid at the end.
//
// How the private daemon is started as root (exim -C cfg -bdf):
//   - Exim refuses a configuration file that is not owned by root (Debian's
//     "Configure owner: 0:0") or is writable by others: the test writes it as
//     root, mode 0644.
//   - The daemon runs its SMTP sessions as exim_user (Debian-exim), so the
//     spool and log directories belong to that user and the path to them is
//     world-searchable (a 0755 directory, not t.TempDir's 0700).
//   - Root may pass -C without losing privilege, but on SIGHUP the daemon,
//     by then running as exim_user, re-executes itself with the same -C and
//     Debian's Exim drops root for a -C file that is not listed in
//     TRUSTED_CONFIG_LIST (/etc/exim4/trusted_configs, which does not
//     exist by default). The daemon would still work on an unprivileged
//     port, but to reload exactly like a system daemon the test runs it in a
//     private mount namespace (unshare --mount --propagation private) where a
//     directory holding a trusted_configs that lists the private
//     configuration is bind-mounted over /etc/exim4 (on a host without
//     /etc/exim4, an overlay on /etc adds it). Nothing outside that
//     namespace sees the mount.
//   - exim_path names the unpacked binary, which the daemon re-executes on
//     SIGHUP; libraries the host lacks are overlaid onto the system library
//     directory in the daemon's mount namespace (see privateExim.libMounts).
//   - daemon_smtp_ports and local_interfaces come from the configuration,
//     not -oX, because with -oX Exim writes no pid file, and the manager's
//     real reload path (SIGHUP to the pid in pid_file_path) is under test.

// requireExim returns Debian's Exim unpacked privately; privileged tests
// fail without it.
func requireExim(t *testing.T) privateExim {
	t.Helper()
	return eximFromDeb(t)
}

// systemDirectory is this host's users and groups.
func systemDirectory(t *testing.T) *policy.Directory {
	t.Helper()
	passwd, err := os.Open("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	defer passwd.Close()
	group, err := os.Open("/etc/group")
	if err != nil {
		t.Fatal(err)
	}
	defer group.Close()
	d, err := policy.ParseDirectory(passwd, group)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// privateDir is a world-searchable scratch directory removed at the end.
func privateDir(t *testing.T, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// eximDaemon is a test's own Exim daemon.
type eximDaemon struct {
	ns     *testutil.NetNS
	dir    string
	config string
	addr   string // inside ns
	pid    int
}

const eximTestPort = 2525

const eximTestConfig = `# Private Exim configuration of an smtpguard test.
primary_hostname = smtpguard-test.invalid
spool_directory = {{dir}}/spool
log_file_path = {{dir}}/log/%slog
pid_file_path = {{dir}}/exim.pid
daemon_smtp_ports = {{port}}
local_interfaces = 127.0.0.1
exim_path = {{bin}}
keep_environment =
tls_advertise_hosts =
host_lookup =
rfc1413_hosts =
smtp_receive_timeout = 30s
acl_smtp_rcpt = deny_all

######################################################################
#                       ACL CONFIGURATION                            #
######################################################################

begin acl

deny_all:
  deny

begin routers

begin transports
`

func startEximDaemon(t *testing.T, x privateExim) *eximDaemon {
	t.Helper()
	d := &eximDaemon{dir: privateDir(t, "smtpguard-exim-")}
	d.config = filepath.Join(d.dir, "exim.conf")
	d.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(eximTestPort))
	cfg := strings.NewReplacer("{{dir}}", d.dir, "{{port}}", strconv.Itoa(eximTestPort), "{{bin}}", x.bin).Replace(eximTestConfig)
	if err := os.WriteFile(d.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := x.command("-C", d.config, "-bP", "exim_user", "exim_group").Output()
	if err != nil {
		t.Fatalf("exim -bP exim_user: %v", err)
	}
	vals := parseNameValues(out)
	u, err := user.Lookup(vals["exim_user"])
	if err != nil {
		t.Fatalf("exim_user: %v", err)
	}
	g, err := user.LookupGroup(vals["exim_group"])
	if err != nil {
		t.Fatalf("exim_group: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(g.Gid)
	for _, sub := range []string{"spool", "log"} {
		p := filepath.Join(d.dir, sub)
		// exim -bP above may have created the spool directory already.
		if err := os.MkdirAll(p, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}

	// Run exim in the test's network namespace, and where Exim has a
	// trusted-configuration list, in a private mount namespace in which
	// that list names our configuration (see the comment at the top).
	// Commands run in the private mount namespace before exim starts.
	var prep strings.Builder
	if list := trustedConfigList(x, d.config); list != "" {
		trust := filepath.Join(d.dir, "trust")
		if err := os.Mkdir(trust, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(trust, filepath.Base(list)), []byte(d.config+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		listDir := filepath.Dir(list)
		if _, err := os.Stat(listDir); err == nil {
			fmt.Fprintf(&prep, "mount --bind %s %s && ", shellQuote(trust), shellQuote(listDir))
		} else {
			// No /etc/exim4 on this host: an overlay over its parent, in
			// the private mount namespace only, holds it.
			parent := filepath.Dir(listDir)
			upper, work := filepath.Join(d.dir, "overlay-upper"), filepath.Join(d.dir, "overlay-work")
			for _, dir := range []string{upper, work} {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			fmt.Fprintf(&prep, "mount -t overlay overlay -o %s %s && mkdir %s && cp %s/* %s/ && ",
				shellQuote("lowerdir="+parent+",upperdir="+upper+",workdir="+work), shellQuote(parent),
				shellQuote(listDir), shellQuote(trust), shellQuote(listDir))
		}
	}
	for _, m := range x.libMounts {
		fmt.Fprintf(&prep, "mount -t overlay overlay -o %s %s && ", shellQuote("lowerdir="+strings.Join(m.lower, ":")), shellQuote(m.target))
	}
	script := `exec "$1" -C "$2" -bdf`
	args := []string{"sh", "-c", script, "sh", x.bin, d.config}
	if prep.Len() > 0 {
		args = []string{"unshare", "--mount", "--propagation", "private",
			"sh", "-c", prep.String() + script, "sh", x.bin, d.config}
	}
	d.ns = testutil.NewNetNS(t)
	cmd := d.ns.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), x.env...)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting exim: %v", err)
	}
	// ip netns exec, unshare and sh all exec, so this is exim's pid.
	d.pid = cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		syscall.Kill(d.pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(d.pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("exim output:\n%s", output.String())
			for _, f := range []string{"mainlog", "paniclog", "rejectlog"} {
				if b, err := os.ReadFile(filepath.Join(d.dir, "log", f)); err == nil {
					t.Logf("%s:\n%s", f, b)
				}
			}
		}
	})

	// Ready when the pid file names it and it greets.
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("exim exited at start:\n%s", output.String())
		default:
		}
		if pid, _ := readPIDFile(filepath.Join(d.dir, "exim.pid")); pid == d.pid {
			if c, greeting, err := d.dial(); err == nil {
				c.Close()
				if strings.HasPrefix(greeting, "220") {
					return d
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("exim did not start within 10s:\n%s", output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// trustedConfigList is the TRUSTED_CONFIG_LIST exim was built with, if any
// (exim -d -bV prints it; config is any valid configuration).
func trustedConfigList(x privateExim, config string) string {
	out, _ := x.command("-C", config, "-d", "-bV").CombinedOutput()
	m := regexp.MustCompile(`TRUSTED_CONFIG_LIST: "([^"]+)"`).FindSubmatch(out)
	if m == nil {
		return ""
	}
	list := string(m[1])
	if fi, err := os.Stat(filepath.Dir(list)); err == nil && !fi.IsDir() {
		return ""
	}
	return list
}

// dial opens an SMTP connection to the daemon from inside its namespace and
// reads the greeting.
func (d *eximDaemon) dial() (net.Conn, string, error) {
	var c net.Conn
	err := d.ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", d.addr, 3*time.Second)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, "", fmt.Errorf("reading greeting: %w", err)
	}
	c.SetReadDeadline(time.Time{})
	return c, strings.TrimSpace(greeting), nil
}

// openSessions opens n SMTP sessions that each got a 220 greeting and keeps
// them open until the returned function or the test's end closes them. A
// 421 may come from sessions closed just before that the daemon has not
// reaped yet, so each session is retried a bounded number of times.
func (d *eximDaemon) openSessions(t *testing.T, n int) (closeAll func()) {
	t.Helper()
	var conns []net.Conn
	closeAll = func() {
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	t.Cleanup(closeAll)
	for i := 0; i < n; i++ {
		var last string
		for attempt := 0; ; attempt++ {
			c, greeting, err := d.dial()
			if err == nil && strings.HasPrefix(greeting, "220") {
				conns = append(conns, c)
				break
			}
			if c != nil {
				c.Close()
			}
			last = fmt.Sprintf("greeting %q, error %v", greeting, err)
			if attempt == 40 {
				t.Fatalf("session %d of %d: no 220 greeting after %d attempts: %s", i+1, n, attempt+1, last)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return closeAll
}

// greeting opens one more session and returns its greeting.
func (d *eximDaemon) greeting(t *testing.T) string {
	t.Helper()
	c, g, err := d.dial()
	if err != nil {
		t.Fatalf("dial %s: %v", d.addr, err)
	}
	c.Close()
	return g
}

// eximReports is what `exim -C cfg -bP` itself reports for the limits.
func eximReports(t *testing.T, x privateExim, cfg string) Limits {
	t.Helper()
	out, err := x.command(append([]string{"-C", cfg, "-bP"}, eximLimitOptions...)...).Output()
	if err != nil {
		t.Fatalf("exim -bP: %v", err)
	}
	v, err := parseEximBP(out)
	if err != nil {
		t.Fatal(err)
	}
	return v.Limits
}

func TestPrivilegedEximLimits(t *testing.T) {
	testutil.Privileged(t)
	x := requireExim(t)
	d := startEximDaemon(t, x)
	ctx := t.Context()
	dir := systemDirectory(t)

	m, err := NewManager(ctx, x.options(Options{EximConfig: d.config}), dir)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	exim, ok := m.(*Exim)
	if !ok {
		t.Fatalf("NewManager returned %T, want *Exim", m)
	}

	// The private configuration leaves smtp_accept_max at Exim's default.
	before, err := m.SetLimits(ctx, Limits{MaxConnections: 2})
	if err != nil {
		t.Fatalf("SetLimits(max 2): %v", err)
	}
	if want := (Limits{MaxConnections: 20}); before != want {
		t.Errorf("SetLimits(max 2) before = %+v, want %+v", before, want)
	}
	info, err := m.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if want := eximReports(t, x, d.config); info.Limits != want || want.MaxConnections != 2 {
		t.Errorf("Info().Limits = %+v, exim -bP reports %+v, want max 2", info.Limits, want)
	}
	if info.MTA != "exim" || !info.Installed || !info.Running || info.Version == "" || info.Config != d.config {
		t.Errorf("Info() = %+v, want installed, running exim with a version and config %s", info, d.config)
	}

	t.Run("max 2 refuses a third session", func(t *testing.T) {
		closeAll := d.openSessions(t, 2)
		defer closeAll()
		if g := d.greeting(t); !strings.HasPrefix(g, "421") {
			t.Errorf("third session greeting = %q, want Exim's 421 refusal", g)
		}
	})

	t.Run("max 5 lets the third in", func(t *testing.T) {
		before, err := m.SetLimits(ctx, Limits{MaxConnections: 5})
		if err != nil {
			t.Fatalf("SetLimits(max 5): %v", err)
		}
		if want := (Limits{MaxConnections: 2}); before != want {
			t.Errorf("SetLimits(max 5) before = %+v, want %+v", before, want)
		}
		closeAll := d.openSessions(t, 3)
		closeAll()
	})

	t.Run("per host 1 refuses a second session from the same address", func(t *testing.T) {
		if _, err := m.SetLimits(ctx, Limits{MaxConnections: 5, MaxPerHost: 1}); err != nil {
			t.Fatalf("SetLimits(max 5, per host 1): %v", err)
		}
		if got, want := eximReports(t, x, d.config), (Limits{MaxConnections: 5, MaxPerHost: 1}); got != want {
			t.Errorf("exim -bP = %+v, want %+v", got, want)
		}
		closeAll := d.openSessions(t, 1)
		defer closeAll()
		if g := d.greeting(t); !strings.HasPrefix(g, "421") {
			t.Errorf("second session greeting = %q, want Exim's 421 refusal", g)
		}
		closeAll()
		if _, err := m.SetLimits(ctx, Limits{MaxConnections: 5}); err != nil {
			t.Fatalf("SetLimits(max 5): %v", err)
		}
	})

	t.Run("a candidate Exim refuses leaves the working config", func(t *testing.T) {
		good, err := os.ReadFile(d.config)
		if err != nil {
			t.Fatal(err)
		}
		exim.editCandidate = func(b []byte) []byte {
			return bytes.Replace(b, []byte("smtp_accept_max = 3\n"), []byte("smtp_accept_max = 3\nno_such_option = 1\n"), 1)
		}
		defer func() { exim.editCandidate = nil }()
		if _, err := m.SetLimits(ctx, Limits{MaxConnections: 3}); err == nil || !strings.Contains(err.Error(), "no_such_option") {
			t.Errorf("SetLimits(broken candidate) = %v, want an error quoting Exim's complaint about no_such_option", err)
		}
		got, err := os.ReadFile(d.config)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(good), string(got)); diff != "" {
			t.Errorf("config changed after a refused candidate (-want +got):\n%s", diff)
		}
		if l := leftoverFiles(t, d.dir); len(l) > 0 {
			t.Errorf("candidate files left behind: %v", l)
		}
		if got, want := eximReports(t, x, d.config), (Limits{MaxConnections: 5}); got != want {
			t.Errorf("exim -bP = %+v, want %+v", got, want)
		}
		// Still limit 5, not 3: four sessions get in.
		closeAll := d.openSessions(t, 4)
		closeAll()
	})

	t.Run("a failed reload restores the previous config", func(t *testing.T) {
		good, err := os.ReadFile(d.config)
		if err != nil {
			t.Fatal(err)
		}
		failing, err := NewManager(ctx, x.options(Options{
			EximConfig: d.config,
			Reload:     func(context.Context) error { return errors.New("injected reload failure") },
		}), dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := failing.SetLimits(ctx, Limits{MaxConnections: 4}); err == nil || !strings.Contains(err.Error(), "injected reload failure") {
			t.Errorf("SetLimits with failing reload = %v, want the reload error", err)
		}
		got, err := os.ReadFile(d.config)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(good, got) {
			t.Errorf("config not restored byte for byte after a failed reload:\n%s", cmp.Diff(string(good), string(got)))
		}
		closeAll := d.openSessions(t, 4)
		closeAll()
	})
}

// debianEximUpdateConf is update-exim4.conf.conf as Debian's debconf
// writes it for a "local delivery only" system (exim4-config ships none).
const debianEximUpdateConf = `dc_eximconfig_configtype='local'
dc_other_hostnames=''
dc_local_interfaces='127.0.0.1 ; ::1'
dc_readhost=''
dc_relay_domains=''
dc_minimaldns='false'
dc_relay_nets=''
dc_smarthost=''
CFILEMODE='644'
dc_use_split_config='false'
dc_hide_mailname=''
dc_mailname_in_oh='true'
dc_localdelivery='mail_spool'
`

// debianEximCopy copies exim4-config's /etc/exim4 (as the package ships it,
// not this host's, which may not exist) into a private directory,
// selects the split or unsplit layout there, sends Exim's logs to a private
// directory (so a refused candidate's panic log stays private too) and
// generates a private config.autogenerated with the real update-exim4.conf.
// The returned Options manage that copy; reloads counts reload calls.
func debianEximCopy(t *testing.T, x privateExim, split bool) (opts Options, reloads *int) {
	t.Helper()
	dir := privateDir(t, "smtpguard-debian-exim-")
	confDir := filepath.Join(dir, "exim4")
	if out, err := exec.Command("cp", "-a", x.confDir, confDir).CombinedOutput(); err != nil {
		t.Fatalf("copying %s: %v\n%s", x.confDir, err, out)
	}
	ucc := filepath.Join(confDir, "update-exim4.conf.conf")
	conf := []byte(debianEximUpdateConf)
	conf = regexp.MustCompile(`(?m)^dc_use_split_config=.*\n`).ReplaceAll(conf, nil)
	conf = fmt.Appendf(conf, "dc_use_split_config='%t'\n", split)
	writeFile(t, ucc, string(conf))

	logDir := filepath.Join(dir, "log")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	logLine := "log_file_path = " + logDir + "/%slog\n"
	if split {
		writeFile(t, filepath.Join(confDir, "conf.d", "main", "000_smtpguard_test_log"), logLine)
	} else {
		template := filepath.Join(confDir, "exim4.conf.template")
		old, err := os.ReadFile(template)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, template, logLine+string(old))
	}

	auto := filepath.Join(dir, "lib", "config.autogenerated")
	if err := os.Mkdir(filepath.Dir(auto), 0o755); err != nil {
		t.Fatal(err)
	}
	update := exec.Command(x.updateConf, "--confdir", confDir, "--output", auto)
	update.Env = append(os.Environ(), x.env...)
	if out, err := update.CombinedOutput(); err != nil {
		t.Fatalf("update-exim4.conf: %v\n%s", err, out)
	}
	reloads = new(int)
	return x.options(Options{
		EximConfig:           auto,
		DebianEximConfDir:    confDir,
		DebianEximAutoConfig: auto,
		Reload: func(context.Context) error {
			*reloads++
			return nil
		},
	}), reloads
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func TestPrivilegedEximLimitsDebianLayout(t *testing.T) {
	testutil.Privileged(t)
	x := requireExim(t)
	ctx := t.Context()
	dir := systemDirectory(t)

	t.Run("split", func(t *testing.T) {
		opts, reloads := debianEximCopy(t, x, true)
		ours := filepath.Join(opts.DebianEximConfDir, "conf.d", "main", "00_smtpguard_limits")
		m, err := NewManager(ctx, opts, dir)
		if err != nil {
			t.Fatal(err)
		}
		live := readFile(t, opts.DebianEximAutoConfig)

		// Another file setting smtp_accept_max makes Exim refuse the
		// candidate; nothing may change, and our file must not appear.
		other := filepath.Join(opts.DebianEximConfDir, "conf.d", "main", "50_local_limits")
		writeFile(t, other, "smtp_accept_max = 9\n")
		if _, err := m.SetLimits(ctx, Limits{MaxConnections: 7}); err == nil || !strings.Contains(err.Error(), "second time") {
			t.Errorf("SetLimits with a second smtp_accept_max = %v, want Exim's complaint", err)
		}
		if _, err := os.Stat(ours); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused candidate (stat: %v)", ours, err)
		}
		if got := readFile(t, opts.DebianEximAutoConfig); got != live {
			t.Errorf("live config changed after a refused candidate")
		}
		if l := leftoverFiles(t, filepath.Dir(opts.DebianEximAutoConfig)); len(l) > 0 {
			t.Errorf("candidate files left behind: %v", l)
		}
		os.Remove(other)

		want := Limits{MaxConnections: 7, MaxPerHost: 3, Reserve: 1}
		before, err := m.SetLimits(ctx, want)
		if err != nil {
			t.Fatalf("SetLimits(%+v): %v", want, err)
		}
		if before != (Limits{MaxConnections: 20}) {
			t.Errorf("before = %+v, want Debian's default max 20", before)
		}
		if got := eximReports(t, x, opts.DebianEximAutoConfig); got != want {
			t.Errorf("exim -bP on the regenerated config = %+v, want %+v", got, want)
		}
		wantFile := string(eximLimitsFile(eximSettings(want, false)))
		if got := readFile(t, ours); got != wantFile {
			t.Errorf("%s = %q, want %q", ours, got, wantFile)
		}
		if *reloads != 1 {
			t.Errorf("reloads = %d, want 1", *reloads)
		}
		info, err := m.Info(ctx)
		if err != nil || info.Limits != want {
			t.Errorf("Info() = %+v, %v; want limits %+v", info.Limits, err, want)
		}
	})

	t.Run("unsplit template", func(t *testing.T) {
		opts, reloads := debianEximCopy(t, x, false)
		template := filepath.Join(opts.DebianEximConfDir, "exim4.conf.template")
		orig := readFile(t, template)
		m, err := NewManager(ctx, opts, dir)
		if err != nil {
			t.Fatal(err)
		}
		want := Limits{MaxConnections: 7, MaxPerHost: 3, Reserve: 1}
		if _, err := m.SetLimits(ctx, want); err != nil {
			t.Fatalf("SetLimits(%+v): %v", want, err)
		}
		if got := eximReports(t, x, opts.DebianEximAutoConfig); got != want {
			t.Errorf("exim -bP on the regenerated config = %+v, want %+v", got, want)
		}
		wantTemplate, err := setEximMain([]byte(orig), eximSettings(want, false))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(wantTemplate), readFile(t, template)); diff != "" {
			t.Errorf("template (-want +got):\n%s", diff)
		}

		// An administrator's broken, not yet activated template edit makes
		// the regenerated candidate invalid: the template keeps that edit
		// (it is restored byte for byte) and the live file is unchanged.
		broken := strings.Replace(readFile(t, template), "\nbegin acl\n", "\nno_such_option = 1\nbegin acl\n", 1)
		writeFile(t, template, broken)
		live := readFile(t, opts.DebianEximAutoConfig)
		if _, err := m.SetLimits(ctx, Limits{MaxConnections: 8}); err == nil || !strings.Contains(err.Error(), "no_such_option") {
			t.Errorf("SetLimits with a broken template = %v, want Exim's complaint about no_such_option", err)
		}
		if got := readFile(t, template); got != broken {
			t.Errorf("template not restored byte for byte:\n%s", cmp.Diff(broken, got))
		}
		if got := readFile(t, opts.DebianEximAutoConfig); got != live {
			t.Errorf("live config changed after a refused candidate")
		}
		if got := eximReports(t, x, opts.DebianEximAutoConfig); got != want {
			t.Errorf("exim -bP = %+v, want the previous %+v", got, want)
		}
		if *reloads != 1 {
			t.Errorf("reloads = %d, want 1", *reloads)
		}
	})
}
