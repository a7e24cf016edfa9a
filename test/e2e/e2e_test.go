//go:build linux

// Package e2e drives the built smtpguard binary against real nftables in
// private network namespaces, with real test users, and checks who can and
// cannot reach SMTP servers over IPv4, IPv6 and IPv4-mapped IPv6.
//
// Addresses: the client namespace is 192.0.2.1 / 2001:db8::1, the server
// namespace 192.0.2.2 and .3 / 2001:db8::2 and ::3 (documentation ranges only).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/enforce/bpf"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

var binary string // built once by TestMain

func TestMain(m *testing.M) {
	if os.Getenv(vectorEnv) != "" {
		runVector()
	}
	if os.Getenv(noNetfilterEnv) != "" {
		runWithoutNetfilter()
	}
	testutil.MaybeRunHelper()
	if os.Getenv(testutil.PrivilegedEnv) != "1" {
		os.Exit(m.Run()) // every test here skips with a reason
	}
	dir, err := os.MkdirTemp("", "smtpguard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "smtpguard")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	build := exec.CommandContext(ctx, "go", "build", "-o", binary, "github.com/smtpguard/smtpguard/cmd/smtpguard")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot build the smtpguard binary, so no end-to-end test ran: "+
			"CGO_ENABLED=0 go build github.com/smtpguard/smtpguard/cmd/smtpguard: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	for _, clean := range []func() error{testutil.RemoveLeftovers, testutil.RemoveBPFFSLeftovers, testutil.RemoveCgroupLeftovers} {
		if err := clean(); err != nil {
			fmt.Fprintln(os.Stderr, "warning: removing leftovers of earlier runs:", err)
		}
	}
	// No test may attach to the root cgroup, which the whole host is in.
	cgRoot, err := testutil.Cgroup2Root()
	if err != nil {
		fmt.Fprintln(os.Stderr, "find the cgroup2 root:", err)
		os.Exit(1)
	}
	rootProgsBefore, err := bpf.CgroupPrograms(cgRoot)
	if err != nil {
		fmt.Fprintln(os.Stderr, "list the root cgroup's programs:", err)
		os.Exit(1)
	}
	hostBefore, err := exec.Command("nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "nft list ruleset (install nftables; make test does): %v\n%s", err, hostBefore)
		os.Exit(1)
	}
	code := m.Run()
	rootProgsAfter, err := bpf.CgroupPrograms(cgRoot)
	if diff := cmp.Diff(rootProgsBefore, rootProgsAfter); err != nil || diff != "" {
		fmt.Fprintf(os.Stderr, "FAIL: programs attached to the root cgroup %s changed during the tests (%v) (-before +after):\n%s", cgRoot, err, diff)
		code = 1
	}
	hostAfter, _ := exec.Command("nft", "list", "ruleset").CombinedOutput()
	if !bytes.Equal(hostBefore, hostAfter) {
		fmt.Fprintf(os.Stderr, "FAIL: the host's ruleset changed during the tests:\nbefore:\n%s\nafter:\n%s", hostBefore, hostAfter)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// world is a client and a server namespace joined by a veth pair, SMTP and
// non-SMTP listeners, test users, and a state directory for smtpguard.
type world struct {
	t              *testing.T
	client, server *testutil.NetNS
	stateDir       string
	group          string
	plain          testutil.User // an ordinary user
	primary        testutil.User // primary group is the allowed group
	supp           testutil.User // only a supplementary member of it
}

var serverPorts = []int{25, 465, 587, 2525, 8080}

func newWorld(t *testing.T) *world {
	t.Helper()
	testutil.Privileged(t)
	w := &world{t: t, stateDir: t.TempDir()}
	w.client, w.server = testutil.NewNetNS(t), testutil.NewNetNS(t)
	testutil.Veth(t, w.client, []string{"192.0.2.1/24", "2001:db8::1/64"}, w.server,
		[]string{"192.0.2.2/24", "2001:db8::2/64", "192.0.2.3/24", "2001:db8::3/64"})
	for _, port := range serverPorts {
		for _, addr := range []string{"192.0.2.2", "2001:db8::2", "192.0.2.3", "2001:db8::3"} {
			testutil.ListenTCP(t, w.server, testutil.HostPort(addr, port))
		}
	}
	testutil.ListenTCP(t, w.client, "127.0.0.1:25")
	testutil.ListenTCP(t, w.client, "[::1]:25")
	var gid uint32
	w.group, gid = testutil.NewGroup(t, "mail")
	_ = gid
	w.plain = testutil.NewUser(t, "plain", "")
	w.primary = testutil.NewUser(t, "prim", w.group)
	w.supp = testutil.NewUser(t, "supp", "", w.group)
	return w
}

type cmdResult struct {
	code           int
	stdout, stderr string
}

// sg runs the binary inside the client namespace.
func (w *world) sg(args ...string) cmdResult {
	w.t.Helper()
	testutil.RefuseRootAttach(w.t, args...)
	return run(w.t, w.client.Command(binary, append([]string{"--state-dir", w.stateDir}, args...)...))
}

// run runs cmd and returns its exit code and output; only a failure to run
// it at all fails the test.
func run(t *testing.T, cmd *exec.Cmd) cmdResult {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", cmd.Path, err)
	}
	return cmdResult{code, out.String(), errb.String()}
}

func (w *world) sgOK(args ...string) string {
	w.t.Helper()
	r := w.sg(args...)
	if r.code != 0 {
		w.t.Fatalf("smtpguard %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

type status struct {
	Enabled       bool     `json:"enabled"`
	Backend       string   `json:"backend"`
	Mode          string   `json:"mode"`
	Ports         []int    `json:"ports"`
	AllowedUsers  []string `json:"allowed_users"`
	AllowedGroups []string `json:"allowed_groups"`
	Kernel        struct {
		State string `json:"state"`
	} `json:"kernel"`
}

func (w *world) status() status {
	w.t.Helper()
	var st status
	out := w.sgOK("status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		w.t.Fatalf("status --json: %v: %s", err, out)
	}
	return st
}

var counterValues = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// kernelTable is smtpguard's table as nft lists it, without counter values,
// or "" when absent.
func (w *world) kernelTable() string {
	w.t.Helper()
	out, err := w.client.Command("nft", "list", "table", "inet", "smtpguard").CombinedOutput()
	if err != nil {
		return ""
	}
	return counterValues.ReplaceAllString(string(out), "counter")
}

// remote lists v4, v6 and v4-mapped v6 addresses of the server for a port.
func remote(port int) []string {
	return []string{
		testutil.HostPort("192.0.2.2", port),
		testutil.HostPort("2001:db8::2", port),
		testutil.HostPort("::ffff:192.0.2.2", port),
	}
}

func (w *world) who(u *testutil.User) string {
	if u == nil {
		return "root"
	}
	return u.Name
}

// expectReach asserts that u connects to every address.
func (w *world) expectReach(u *testutil.User, addrs ...string) {
	w.t.Helper()
	for _, r := range testutil.ConnectAs(w.t, w.client, u, addrs...) {
		if !r.OK {
			w.t.Errorf("%s cannot connect to %s, want connected (mail or service this user may use is cut off): %s", w.who(u), r.Addr, r)
		} else if !strings.HasPrefix(r.Banner, "220 ") {
			w.t.Errorf("%s connected to %s but got banner %q", w.who(u), r.Addr, r.Banner)
		}
	}
}

// expectBlocked asserts that u is refused at once on every address.
func (w *world) expectBlocked(u *testutil.User, addrs ...string) {
	w.t.Helper()
	for _, r := range testutil.ConnectAs(w.t, w.client, u, addrs...) {
		switch {
		case r.OK:
			w.t.Errorf("%s connected to %s, want refused: this user can still send mail around the MTA", w.who(u), r.Addr)
		case r.Errno != "ECONNREFUSED":
			w.t.Errorf("%s to %s failed with %s (%s) after %v, want ECONNREFUSED at once", w.who(u), r.Addr, r.Errno, r.Err, r.Elapsed)
		case r.Elapsed > 500*time.Millisecond:
			// A reset answers at once; 1 s means an icmp reject's SYN retransmit.
			w.t.Errorf("%s to %s was refused only after %v, want at once", w.who(u), r.Addr, r.Elapsed)
		}
	}
}

func TestPrivilegedEndToEnd(t *testing.T) {
	w := newWorld(t)
	local := []string{"127.0.0.1:25", "[::1]:25"}

	t.Run("before enable everyone reaches everything", func(t *testing.T) {
		w.t = t
		var all []string
		for _, port := range serverPorts {
			all = append(all, remote(port)...)
		}
		all = append(all, local...)
		for _, u := range []*testutil.User{nil, &w.plain, &w.primary, &w.supp} {
			w.expectReach(u, all...)
		}
	})
	t.Run("enable restricts ordinary users at once", func(t *testing.T) {
		w.t = t
		w.sgOK("enable", "--backend", "nft")
		w.sgOK("allow", "group", w.group)
		for _, port := range []int{25, 465, 587} {
			w.expectBlocked(&w.plain, remote(port)...)
			w.expectReach(nil, remote(port)...)
		}
	})
	t.Run("non-SMTP ports and local delivery stay open", func(t *testing.T) {
		w.t = t
		w.expectReach(&w.plain, remote(8080)...)
		w.expectReach(&w.plain, local...)
	})
	t.Run("primary and supplementary members of an allowed group connect", func(t *testing.T) {
		w.t = t
		w.expectReach(&w.primary, remote(25)...)
		w.expectReach(&w.supp, remote(25)...)
		w.expectReach(&w.supp, remote(587)...)
	})
	t.Run("status reflects the policy", func(t *testing.T) {
		w.t = t
		st := w.status()
		if !st.Enabled {
			t.Errorf("status --json says enabled=false right after enable: %+v", st)
		}
		if st.Backend != "nft" {
			t.Errorf("status --json backend = %q after enable --backend nft", st.Backend)
		}
		if st.Mode != "reject" {
			t.Errorf("status --json mode = %q, want the default reject", st.Mode)
		}
		if fmt.Sprint(st.Ports) != "[25 465 587]" {
			t.Errorf("status --json ports = %v, want the default [25 465 587]", st.Ports)
		}
		if fmt.Sprint(st.AllowedGroups) != fmt.Sprint([]string{w.group}) {
			t.Errorf("status --json allowed_groups = %q, want [%s] after allow group", st.AllowedGroups, w.group)
		}
		if len(st.AllowedUsers) != 0 {
			t.Errorf("status --json allowed_users = %q, want none (no user was allowed)", st.AllowedUsers)
		}
		if st.Kernel.State != "in sync" {
			t.Errorf("status --json kernel state = %q, want in sync", st.Kernel.State)
		}
	})
	t.Run("set ports blocks an added port live", func(t *testing.T) {
		w.t = t
		w.expectReach(&w.plain, remote(2525)...)
		w.sgOK("set", "ports", "25,465,587,2525")
		w.expectBlocked(&w.plain, remote(2525)...)
		if st := w.status(); fmt.Sprint(st.Ports) != "[25 465 587 2525]" {
			t.Errorf("status --json ports = %v after set ports 25,465,587,2525", st.Ports)
		}
		w.expectReach(&w.plain, remote(8080)...)
	})
	t.Run("allow and revoke a user live", func(t *testing.T) {
		w.t = t
		w.sgOK("allow", "user", w.plain.Name)
		w.expectReach(&w.plain, remote(25)...)
		if st := w.status(); fmt.Sprint(st.AllowedUsers) != fmt.Sprint([]string{w.plain.Name}) {
			t.Errorf("status --json allowed_users = %q after allow user %s", st.AllowedUsers, w.plain.Name)
		}
		w.sgOK("revoke", "user", w.plain.Name)
		w.expectBlocked(&w.plain, remote(25)...)
		if st := w.status(); len(st.AllowedUsers) != 0 {
			t.Errorf("status --json allowed_users = %q after revoke user %s, want none", st.AllowedUsers, w.plain.Name)
		}
	})
	t.Run("revoking a group blocks its members", func(t *testing.T) {
		w.t = t
		w.sgOK("revoke", "group", w.group)
		w.expectBlocked(&w.supp, remote(25)...)
		w.sgOK("allow", "group", w.group)
		w.expectReach(&w.supp, remote(25)...)
	})
	t.Run("log mode lets connections through, reject blocks again", func(t *testing.T) {
		w.t = t
		w.sgOK("set", "mode", "log")
		if st := w.status(); st.Mode != "log" {
			t.Errorf("status --json mode = %q after set mode log", st.Mode)
		}
		w.expectReach(&w.plain, remote(25)...)
		w.sgOK("set", "mode", "reject")
		w.expectBlocked(&w.plain, remote(25)...)
	})
	t.Run("allow-local off restricts loopback too", func(t *testing.T) {
		w.t = t
		w.sgOK("set", "allow-local", "off")
		w.expectBlocked(&w.plain, local...)
		w.sgOK("set", "allow-local", "on")
		w.expectReach(&w.plain, local...)
	})
	t.Run("export, disable, import restores the policy and enforcement", func(t *testing.T) {
		w.t = t
		before := w.status()
		file := filepath.Join(t.TempDir(), "policy.toml")
		w.sgOK("export", "--output", file)
		w.sgOK("disable")
		w.expectReach(&w.plain, remote(25)...)
		if st := w.status(); st.Enabled {
			t.Errorf("status --json says enabled after disable: %+v", st)
		}
		w.sgOK("import", file)
		after := w.status()
		if !after.Enabled || fmt.Sprint(after.AllowedGroups) != fmt.Sprint([]string{w.group}) {
			t.Errorf("after import of the exported policy: enabled=%v allowed_groups=%q, want enabled with [%s]",
				after.Enabled, after.AllowedGroups, w.group)
		}
		if fmt.Sprintf("%+v", after) != fmt.Sprintf("%+v", before) {
			t.Errorf("status after export, disable, import = %+v, want what it was before: %+v", after, before)
		}
		w.expectBlocked(&w.plain, remote(25)...)
		w.expectReach(&w.supp, remote(25)...)
	})
	t.Run("enable repairs a flushed ruleset", func(t *testing.T) {
		w.t = t
		w.client.Exec(t, "nft", "flush", "ruleset")
		if st := w.status(); st.Kernel.State != "drift" {
			t.Errorf("status after an external flush: kernel %q, want drift", st.Kernel.State)
		}
		w.expectReach(&w.plain, remote(25)...)
		w.sgOK("enable", "--backend", "nft")
		w.expectBlocked(&w.plain, remote(25)...)
	})
	t.Run("disable restores everything and leaves no table", func(t *testing.T) {
		w.t = t
		w.sgOK("disable")
		w.expectReach(&w.plain, append(remote(25), remote(587)...)...)
		if out := w.client.Exec(t, "nft", "list", "tables"); strings.Contains(out, "smtpguard") {
			t.Errorf("nft list tables after disable = %q, want no smtpguard table", out)
		}
	})
}

func TestPrivilegedBadInputChangesNothing(t *testing.T) {
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	w.sgOK("allow", "group", w.group)
	garbage := filepath.Join(t.TempDir(), "garbage.toml")
	if err := os.WriteFile(garbage, []byte("version = 1\nports = [\"lots\"]\n{{{"), 0o644); err != nil {
		t.Fatal(err)
	}
	beforeStatus := w.sgOK("status", "--json")
	beforeTable := w.kernelTable()
	if beforeTable == "" {
		t.Fatal("no smtpguard table after enable")
	}
	for _, args := range [][]string{
		{"allow", "user", "sgt-no-such-user"},
		{"allow", "group", "no-such-group-xyz"},
		{"set", "ports", "0"},
		{"set", "ports", "70000"},
		{"set", "ports", "25,25"},
		{"set", "ports", "abc"},
		{"set", "mode", "bogus"},
		{"set", "allow-local", "maybe"},
		{"enable", "--backend", "bogus"},
		{"import", garbage},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			w.t = t
			cmdline := "smtpguard " + strings.Join(args, " ")
			r := w.sg(args...)
			if r.code == 0 {
				t.Errorf("%s exited 0: bad input was accepted as if it were fine", cmdline)
			}
			if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "smtpguard: ") {
				t.Errorf("%s printed %q on stderr, want exactly one line \"smtpguard: ...\"", cmdline, r.stderr)
			}
			if after := w.sgOK("status", "--json"); after != beforeStatus {
				t.Errorf("%s changed the policy although it failed; status --json now:\n%s\nwas:\n%s", cmdline, after, beforeStatus)
			}
			if after := w.kernelTable(); after != beforeTable {
				t.Errorf("%s changed the kernel rules although it failed; nft table now:\n%s\nwas:\n%s", cmdline, after, beforeTable)
			}
		})
	}
	w.t = t
	w.expectBlocked(&w.plain, remote(25)...)
	w.sgOK("disable")
}
