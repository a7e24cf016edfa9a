//go:build linux

package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	MaybeRunHelper()
	if os.Getenv(PrivilegedEnv) == "1" && os.Geteuid() == 0 {
		if err := RemoveLeftovers(); err != nil {
			fmt.Fprintln(os.Stderr, "warning: removing leftovers of earlier runs:", err)
		}
	}
	os.Exit(m.Run())
}

// fakeTB records what a helper did to a test. Fatal and Skip end the calling
// goroutine like the real ones, so run the code under test with (*fakeTB).run.
type fakeTB struct {
	testing.TB // nil: any method not overridden panics
	name       string
	failed     bool
	skipped    bool
	msg        string
}

func (f *fakeTB) Name() string { return f.name }
func (f *fakeTB) Helper()      {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatal(args ...any) {
	f.failed, f.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Cleanup(func()) { panic("fakeTB: Cleanup not supported") }

func (f *fakeTB) run(fn func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
}

func TestGateForPrivilegedTests(t *testing.T) {
	root := os.Geteuid() == 0
	tests := []struct {
		name, env   string
		fail, skip  bool
		msgContains string
	}{
		{name: "TestSomething", env: "", fail: true, msgContains: "not named TestPrivileged"},
		{name: "TestSomething", env: "1", fail: true, msgContains: "not named TestPrivileged"},
		{name: "TestSomething/TestPrivilegedSub", env: "1", fail: true, msgContains: "TestSomething"},
		{name: "TestPrivilegedX", env: "", skip: true, msgContains: PrivilegedEnv + "=1"},
		{name: "TestPrivilegedX/sub/case", env: "", skip: true},
		{name: "TestPrivilegedX", env: "0", skip: true},
		{name: "TestPrivilegedX", env: "yes", skip: true},
		{name: "BenchmarkPrivilegedX", env: "", skip: true},
		{name: "TestPrivilegedX/sub", env: "1", fail: !root, msgContains: map[bool]string{false: "root", true: ""}[root]},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/env="+tt.env, func(t *testing.T) {
			t.Setenv(PrivilegedEnv, tt.env)
			f := &fakeTB{name: tt.name}
			f.run(Privileged)
			if f.failed != tt.fail || f.skipped != tt.skip {
				t.Errorf("Privileged() in %s with %s=%q: failed=%v skipped=%v (%q), want failed=%v skipped=%v",
					tt.name, PrivilegedEnv, tt.env, f.failed, f.skipped, f.msg, tt.fail, tt.skip)
			}
			if !strings.Contains(f.msg, tt.msgContains) {
				t.Errorf("Privileged() message %q does not mention %q", f.msg, tt.msgContains)
			}
		})
	}
}

func TestNetNSName(t *testing.T) {
	re := regexp.MustCompile(`^sgt-[0-9a-f]{8}$`)
	seen := map[string]bool{}
	for range 100 {
		name := newNetNSName()
		if !re.MatchString(name) {
			t.Fatalf("newNetNSName() = %q, want sgt-<8 hex digits>", name)
		}
		if seen[name] {
			t.Fatalf("newNetNSName() repeated %q", name)
		}
		seen[name] = true
	}
	if p := (&NetNS{Name: "sgt-0011aabb"}).Path(); p != "/run/netns/sgt-0011aabb" {
		t.Errorf("Path() = %q", p)
	}
}

func TestAccountName(t *testing.T) {
	for _, suffix := range []string{"", "plain", "supp", "a-b_c9", strings.Repeat("x", 40)} {
		name, err := accountName(suffix)
		if err != nil {
			t.Fatalf("accountName(%q): %v", suffix, err)
		}
		want := regexp.MustCompile(`^sgt[0-9a-f]{6}` + regexp.QuoteMeta(suffix[:min(len(suffix), maxAccountName-9)]) + `$`)
		if !want.MatchString(name) || len(name) > maxAccountName {
			t.Errorf("accountName(%q) = %q (%d chars), want sgt + 6 hex + suffix, at most %d chars", suffix, name, len(name), maxAccountName)
		}
		if !generatedAccount.MatchString(name) {
			t.Errorf("RemoveLeftovers would not recognise %q", name)
		}
	}
	for _, suffix := range []string{"Upper", "sp ace", "colon:", "slash/", "dot."} {
		if name, err := accountName(suffix); err == nil {
			t.Errorf("accountName(%q) = %q, want an error", suffix, name)
		}
	}
	// RemoveLeftovers must never match accounts this package did not make.
	for _, name := range []string{"root", "sgt", "sgt-0011aabb", "sgtxyz123plain", "sgt12345", "Debian-exim", "asgt001122"} {
		if generatedAccount.MatchString(name) {
			t.Errorf("generatedAccount matches %q", name)
		}
	}
}

func TestOwnerRecords(t *testing.T) {
	old := ownerDir
	ownerDir = t.TempDir()
	t.Cleanup(func() { ownerDir = old })

	if ownedByLiveProcess(kindNetNS, "sgt-00000000") {
		t.Error("a namespace without a record counts as owned")
	}
	if err := claim(kindNetNS, "sgt-11111111"); err != nil {
		t.Fatal(err)
	}
	if !ownedByLiveProcess(kindNetNS, "sgt-11111111") {
		t.Error("our own namespace does not count as owned by a live process")
	}
	if ownedByLiveProcess(kindAccount, "sgt-11111111") {
		t.Error("records of different kinds are confused")
	}

	start, err := processStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	for rec, alive := range map[string]bool{
		fmt.Sprintf("%d %d\n", os.Getpid(), start):        true,
		fmt.Sprintf("%d %d\n", os.Getpid(), start+1):      false, // pid reused by another process
		fmt.Sprintf("%d %d\n", exited.Process.Pid, start): false,
		"":                false,
		"garbage":         false,
		"0 0":             false,
		"-1 5":            false,
		"12 34 56":        false,
		fmt.Sprint(start): false,
	} {
		if got := recordAlive([]byte(rec)); got != alive {
			t.Errorf("recordAlive(%q) = %v, want %v", rec, got, alive)
		}
	}

	if err := os.WriteFile(recordPath(kindAccount, "sgt123456dead"), []byte("0 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(recordPath("unrelated", "x"), []byte("0 0\n"), 0o600)
	stale := staleRecords()
	if len(stale) != 1 || stale[0] != [2]string{kindAccount, "sgt123456dead"} {
		t.Errorf("staleRecords() = %v, want only the dead account", stale)
	}
	release(kindNetNS, "sgt-11111111")
	if ownedByLiveProcess(kindNetNS, "sgt-11111111") {
		t.Error("release did not forget the record")
	}
}

func TestProcessStartOfParentIsEarlier(t *testing.T) {
	self, err := processStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	parent, err := processStart(os.Getppid())
	if err != nil {
		t.Fatal(err)
	}
	if parent > self {
		t.Errorf("parent started at tick %d, after us at %d: wrong /proc/PID/stat field", parent, self)
	}
}

func TestSockaddr(t *testing.T) {
	tests := []struct {
		addr   string
		family int
		ip     []byte
		port   int
	}{
		{"192.0.2.2:25", unix.AF_INET, []byte{192, 0, 2, 2}, 25},
		{"127.0.0.1:587", unix.AF_INET, []byte{127, 0, 0, 1}, 587},
		{"[2001:db8::2]:465", unix.AF_INET6, []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, 465},
		{"[::1]:25", unix.AF_INET6, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 25},
		// IPv4-mapped: must stay on an AF_INET6 socket, never be unmapped.
		{"[::ffff:192.0.2.2]:25", unix.AF_INET6, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 2}, 25},
	}
	for _, tt := range tests {
		family, sa, err := sockaddr(tt.addr)
		if err != nil {
			t.Errorf("sockaddr(%q): %v", tt.addr, err)
			continue
		}
		if family != tt.family {
			t.Errorf("sockaddr(%q) family = %d, want %d", tt.addr, family, tt.family)
		}
		var ip []byte
		var port int
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			ip, port = sa.Addr[:], sa.Port
		case *unix.SockaddrInet6:
			ip, port = sa.Addr[:], sa.Port
		}
		if string(ip) != string(tt.ip) || port != tt.port {
			t.Errorf("sockaddr(%q) = %v port %d, want %v port %d", tt.addr, ip, port, tt.ip, tt.port)
		}
	}
	if _, sa, err := sockaddr("[fe80::1%lo]:25"); err != nil || sa.(*unix.SockaddrInet6).ZoneId == 0 {
		t.Errorf("sockaddr with zone lo = %+v, %v; want the loopback's index", sa, err)
	}
	for _, bad := range []string{"", "localhost:25", "192.0.2.2", "192.0.2.2:99999", "2001:db8::2:25", "[fe80::1%nosuchif0]:25"} {
		if _, _, err := sockaddr(bad); err == nil {
			t.Errorf("sockaddr(%q) succeeded, want an error", bad)
		}
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[[2]any]string{
		{"192.0.2.2", 25}:        "192.0.2.2:25",
		{"2001:db8::2", 465}:     "[2001:db8::2]:465",
		{"::ffff:192.0.2.2", 25}: "[::ffff:192.0.2.2]:25",
	} {
		if got := HostPort(in[0].(string), in[1].(int)); got != want {
			t.Errorf("HostPort(%v) = %q, want %q", in, got, want)
		}
		if _, _, err := sockaddr(want); err != nil {
			t.Errorf("ConnectAs could not dial HostPort's %q: %v", want, err)
		}
	}
}

func TestBanner(t *testing.T) {
	if got := Banner("192.0.2.2:25"); got != "220 192.0.2.2:25 smtpguard-test\r\n" {
		t.Errorf("Banner() = %q", got)
	}
}

// TestHelperProtocol re-executes this test binary as the connect helper (in
// this namespace, as this user, with addresses it rejects before opening a
// socket: no traffic), proving the request, MaybeRunHelper and result
// decoding fit together.
func TestHelperProtocol(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{"not-an-address", "localhost:25"}
	results, err := callHelper(connectRequest{AsRoot: true, Addrs: addrs}, exe)
	if err != nil {
		t.Fatalf("callHelper: %v", err)
	}
	for i, r := range results {
		if r.Addr != addrs[i] || r.OK || r.Err == "" || r.Errno != "" {
			t.Errorf("result %d = %+v, want a parse error for %q", i, r, addrs[i])
		}
	}
	if results, err := callHelper(connectRequest{AsRoot: true}, exe); err != nil || len(results) != 0 {
		t.Errorf("callHelper without addresses = %v, %v; want no results", results, err)
	}
	if os.Geteuid() != 0 {
		// Not root: dropping privileges must fail loudly, not connect as us.
		_, err := callHelper(connectRequest{UID: 65534, GID: 65534, Addrs: []string{"192.0.2.2:25"}}, exe)
		if err == nil || !strings.Contains(err.Error(), "setgroups") {
			t.Errorf("callHelper as non-root asking for uid 65534 = %v, want a setgroups error", err)
		}
	}
}

func TestConnectResultString(t *testing.T) {
	ok := ConnectResult{Addr: "192.0.2.2:25", OK: true, Banner: "220 x\r\n"}
	if s := ok.String(); !strings.Contains(s, "connected") || !strings.Contains(s, "192.0.2.2:25") {
		t.Errorf("String() = %q", s)
	}
	refused := ConnectResult{Addr: "[2001:db8::2]:25", Errno: "ECONNREFUSED", Err: "connect: connection refused"}
	if s := refused.String(); !strings.Contains(s, "ECONNREFUSED") || !strings.Contains(s, "2001:db8::2") {
		t.Errorf("String() = %q", s)
	}
}
