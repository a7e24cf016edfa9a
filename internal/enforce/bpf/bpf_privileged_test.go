//go:build linux

package bpf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.MaybeRunHelper()
	maybeRunHelper()
	privileged := os.Getenv(testutil.PrivilegedEnv) == "1" && os.Geteuid() == 0
	var root string
	var before map[string][]ebpf.ProgramID
	if privileged {
		for _, clean := range []func() error{testutil.RemoveLeftovers, testutil.RemoveBPFFSLeftovers, testutil.RemoveCgroupLeftovers} {
			if err := clean(); err != nil {
				fmt.Fprintln(os.Stderr, "warning:", err)
			}
		}
		var err error
		if root, err = testutil.Cgroup2Root(); err == nil {
			before, err = CgroupPrograms(root)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "list the root cgroup's programs:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if privileged {
		// No test may attach to the root cgroup, which the whole host is in.
		after, err := CgroupPrograms(root)
		if err != nil {
			fmt.Fprintln(os.Stderr, "list the root cgroup's programs:", err)
			os.Exit(1)
		}
		if diff := cmp.Diff(before, after); diff != "" {
			fmt.Fprintf(os.Stderr, "FAIL: programs attached to the root cgroup %s changed during the tests (-before +after):\n%s", root, diff)
			code = 1
		}
	}
	os.Exit(code)
}

// Addresses of the two namespaces the tests join with a veth pair.
const (
	clientV4 = "192.0.2.1"
	serverV4 = "192.0.2.2"
	clientV6 = "2001:db8::1"
	serverV6 = "2001:db8::2"
)

// world is one test's kernel objects: a client and a server namespace, a
// child cgroup the programs attach to, a private bpf file system, and the
// backend configured for them.
type world struct {
	t        *testing.T
	client   *testutil.NetNS
	server   *testutil.NetNS
	cg       *testutil.Cgroup
	bpffs    string
	b        *Backend
	user     testutil.User // ordinary: refused
	allowed  testutil.User
	localMu  sync.Mutex
	local    []netip.Prefix
	refusal  string // the errno a refused connect gets
	smtpAddr []string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	testutil.Privileged(t)
	w := &world{t: t}
	w.client, w.server = testutil.NewNetNS(t), testutil.NewNetNS(t)
	testutil.Veth(t, w.client, []string{clientV4 + "/24", clientV6 + "/64"}, w.server, []string{serverV4 + "/24", serverV6 + "/64"})
	for _, port := range []int{25, 465, 587, 80} {
		testutil.ListenTCP(t, w.server, hostPort(serverV4, port))
		testutil.ListenTCP(t, w.server, hostPort(serverV6, port))
	}
	// The local MTA of the client's "host": redirect targets and loopback.
	testutil.ListenTCP(t, w.client, "127.0.0.1:25")
	testutil.ListenTCP(t, w.client, "[::1]:25")
	w.cg = testutil.NewCgroup(t)
	w.bpffs = testutil.NewBPFFS(t)
	w.user = testutil.NewUser(t, "bpfu", "")
	w.allowed = testutil.NewUser(t, "bpfa", "")
	w.b = New(Config{
		Logger:     slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		CgroupPath: w.cg.Path,
		BPFFS:      w.bpffs,
		LocalAddrs: func() ([]netip.Prefix, error) {
			w.localMu.Lock()
			defer w.localMu.Unlock()
			return append([]netip.Prefix(nil), w.local...), nil
		},
	})
	w.refusal = w.b.Facts().RefusalErrno
	t.Cleanup(func() {
		if err := w.b.Remove(context.Background()); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	return w
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// ruleset is the test policy: 25, 465, 587 restricted; root and the allowed
// user may send.
func (w *world) ruleset(mode policy.Mode) policy.Ruleset {
	return policy.Ruleset{
		Mode:       mode,
		Ports:      []uint16{25, 465, 587},
		AllowLocal: true,
		UIDs:       sortedUIDs(0, w.allowed.UID),
	}
}

func sortedUIDs(uids ...uint32) []uint32 {
	if len(uids) == 2 && uids[0] > uids[1] {
		uids[0], uids[1] = uids[1], uids[0]
	}
	return uids
}

func (w *world) apply(rs policy.Ruleset) {
	w.t.Helper()
	if err := w.b.Apply(context.Background(), rs); err != nil {
		w.t.Fatalf("Apply: %v", err)
	}
	w.mustVerify(rs)
}

func (w *world) mustVerify(rs policy.Ruleset) {
	w.t.Helper()
	d, err := w.b.Verify(context.Background(), rs)
	if err != nil {
		w.t.Fatalf("Verify: %v", err)
	}
	if !d.InSync() {
		w.t.Fatalf("Verify after Apply: %s", d)
	}
}

// connect runs the helper as u (nil: root) in the client namespace and the
// cgroup.
func (w *world) connect(mode string, u *testutil.User, addrs ...string) helperResult {
	w.t.Helper()
	req := helperRequest{Mode: mode, Addrs: addrs}
	if u != nil {
		req.UID, req.GID = u.UID, u.GID
	}
	return runIn(w.t, w.cg, w.client, req)
}

// outcome is what a test expects of one connect: "ok" (with the banner of
// the server at want, when set) or an errno.
type expect struct {
	addr   string
	errno  string // "" means it connects
	banner string // address whose listener must answer, when it connects
}

func (w *world) check(label string, got helperResult, want []expect) {
	w.t.Helper()
	for i, e := range want {
		r := got.Results[i]
		switch {
		case e.errno != "" && (r.OK || r.Errno != e.errno):
			w.t.Errorf("%s: %s, want %s", label, r, e.errno)
		case e.errno == "" && !r.OK:
			w.t.Errorf("%s: %s, want it to connect", label, r)
		case e.errno == "" && e.banner != "" && r.Banner != testutil.Banner(e.banner):
			w.t.Errorf("%s: %s, want the banner of %s", label, r, e.banner)
		}
	}
}

var smtpPorts = []int{25, 465, 587}

// destinations are every restricted destination over IPv4, IPv6 and
// IPv4-mapped IPv6.
func destinations() []string {
	var out []string
	for _, p := range smtpPorts {
		out = append(out, hostPort(serverV4, p), hostPort(serverV6, p), hostPort("::ffff:"+serverV4, p))
	}
	return out
}

func TestPrivilegedBPFRejectMatrix(t *testing.T) {
	w := newWorld(t)
	rs := w.ruleset(policy.ModeReject)
	w.apply(rs)

	var refused, passes []expect
	for _, a := range destinations() {
		refused = append(refused, expect{addr: a, errno: w.refusal})
		passes = append(passes, expect{addr: a, banner: unmapHost(a)})
	}
	others := []string{hostPort(serverV4, 80), hostPort(serverV6, 80), "127.0.0.1:25", "[::1]:25"}
	var othersPass []expect
	for _, a := range others {
		othersPass = append(othersPass, expect{addr: a, banner: a})
	}
	start := time.Now()
	w.check("ordinary user", w.connect(helperConnect, &w.user, destinations()...), refused)
	t.Logf("9 refused connects (and a helper start) in %v", time.Since(start))
	w.check("ordinary user, other ports and loopback", w.connect(helperConnect, &w.user, others...), othersPass)
	w.check("allowed user", w.connect(helperConnect, &w.allowed, destinations()...), passes)
	w.check("root", w.connect(helperConnect, nil, destinations()...), passes)

	// The cgroup is what counts: the same user outside it is not restricted.
	outside := testutil.ConnectAs(t, w.client, &w.user, hostPort(serverV4, 25))
	if !outside[0].OK {
		t.Errorf("ordinary user outside the cgroup: %s, want it to connect (only the cgroup is restricted)", outside[0])
	}
}

// TestPrivilegedBPFOtherPaths: the other ways into a TCP connect are
// refused too, and UDP, which runs the same hook, is not restricted.
func TestPrivilegedBPFOtherPaths(t *testing.T) {
	w := newWorld(t)
	w.apply(w.ruleset(policy.ModeReject))
	addrs := []string{hostPort(serverV4, 25), hostPort(serverV6, 465), hostPort("::ffff:"+serverV4, 587)}
	refused := []expect{{addr: addrs[0], errno: w.refusal}, {addr: addrs[1], errno: w.refusal}, {addr: addrs[2], errno: w.refusal}}
	for _, kind := range []string{kindFastOpen, kindMPTCP} {
		req := helperRequest{Mode: helperConnect, UID: w.user.UID, GID: w.user.GID, Addrs: addrs, Kind: kind}
		w.check(kind, runIn(t, w.cg, w.client, req), refused)
		req.UID, req.GID = w.allowed.UID, w.allowed.GID
		w.check(kind+" allowed user", runIn(t, w.cg, w.client, req), []expect{{addr: addrs[0]}, {addr: addrs[1]}, {addr: addrs[2]}})
	}
	req := helperRequest{Mode: helperConnect, UID: w.user.UID, GID: w.user.GID, Addrs: addrs, Kind: kindUDP}
	w.check("udp", runIn(t, w.cg, w.client, req), []expect{{addr: addrs[0]}, {addr: addrs[1]}, {addr: addrs[2]}})
}

// unmapHost turns "[::ffff:192.0.2.2]:25" into "192.0.2.2:25": the IPv4
// listener answers a mapped connect.
func unmapHost(a string) string {
	ap := netip.MustParseAddrPort(a)
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

func TestPrivilegedBPFAllowLocalOff(t *testing.T) {
	w := newWorld(t)
	rs := w.ruleset(policy.ModeReject)
	rs.AllowLocal = false
	w.apply(rs)
	w.check("loopback without allow-local", w.connect(helperConnect, &w.user, "127.0.0.1:25", "[::1]:25"),
		[]expect{{addr: "127.0.0.1:25", errno: w.refusal}, {addr: "[::1]:25", errno: w.refusal}})

	// This host's own addresses count as local once listed.
	rs.AllowLocal = true
	w.localMu.Lock()
	w.local = []netip.Prefix{netip.MustParsePrefix(serverV4 + "/32")}
	w.localMu.Unlock()
	w.apply(rs)
	w.check("a listed local address", w.connect(helperConnect, &w.user, hostPort(serverV4, 25), hostPort(serverV6, 25)),
		[]expect{{addr: hostPort(serverV4, 25)}, {addr: hostPort(serverV6, 25), errno: w.refusal}})
	// RefreshLocal follows address changes without a full Apply.
	w.localMu.Lock()
	w.local = []netip.Prefix{netip.MustParsePrefix(serverV6 + "/128")}
	w.localMu.Unlock()
	if err := w.b.RefreshLocal(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.mustVerify(rs)
	w.check("after RefreshLocal", w.connect(helperConnect, &w.user, hostPort(serverV4, 25), hostPort(serverV6, 25)),
		[]expect{{addr: hostPort(serverV4, 25), errno: w.refusal}, {addr: hostPort(serverV6, 25)}})
}

func TestPrivilegedBPFExceptions(t *testing.T) {
	w := newWorld(t)
	rs := w.ruleset(policy.ModeReject)
	rs.Exceptions = []policy.ExceptionRule{
		{UID: w.user.UID, Dst: netip.MustParsePrefix("192.0.2.0/24"), Port: 587},
		{UID: w.user.UID, Dst: netip.MustParsePrefix("2001:db8::/32"), Port: 465},
		// Same uid and port, other networks: the server is outside them.
		{UID: w.user.UID, Dst: netip.MustParsePrefix("198.51.100.0/24"), Port: 25},
		{UID: w.user.UID, Dst: netip.MustParsePrefix("2001:db8:1::/48"), Port: 587},
	}
	w.apply(rs)
	w.check("exceptions", w.connect(helperConnect, &w.user,
		hostPort(serverV4, 587), hostPort("::ffff:"+serverV4, 587), hostPort(serverV4, 25), hostPort(serverV6, 465), hostPort(serverV6, 587)),
		[]expect{
			{addr: hostPort(serverV4, 587), banner: hostPort(serverV4, 587)},
			{addr: hostPort("::ffff:"+serverV4, 587), banner: hostPort(serverV4, 587)},
			{addr: hostPort(serverV4, 25), errno: w.refusal},
			{addr: hostPort(serverV6, 465), banner: hostPort(serverV6, 465)},
			{addr: hostPort(serverV6, 587), errno: w.refusal},
		})
	// Another user gets nothing from them.
	other := testutil.NewUser(t, "bpfo", "")
	w.check("another user", w.connect(helperConnect, &other, hostPort(serverV4, 587), hostPort(serverV6, 465)),
		[]expect{{addr: hostPort(serverV4, 587), errno: w.refusal}, {addr: hostPort(serverV6, 465), errno: w.refusal}})
}

func TestPrivilegedBPFModes(t *testing.T) {
	w := newWorld(t)
	events := w.collectEvents()

	w.apply(w.ruleset(policy.ModeRedirect))
	w.check("redirect", w.connect(helperConnect, &w.user, hostPort(serverV4, 25), hostPort(serverV6, 25), hostPort("::ffff:"+serverV4, 25)),
		[]expect{
			{addr: hostPort(serverV4, 25), banner: "127.0.0.1:25"},
			{addr: hostPort(serverV6, 25), banner: "[::1]:25"},
			{addr: hostPort("::ffff:"+serverV4, 25), banner: "127.0.0.1:25"},
		})
	w.check("redirect spares allowed users", w.connect(helperConnect, &w.allowed, hostPort(serverV4, 25)),
		[]expect{{addr: hostPort(serverV4, 25), banner: hostPort(serverV4, 25)}})
	events.waitFor(t, 3, func(e Event) bool { return e.Action == enforce.ActionRedirected && e.UID == w.user.UID })

	w.apply(w.ruleset(policy.ModeLog))
	w.check("log", w.connect(helperConnect, &w.user, hostPort(serverV4, 25), hostPort(serverV6, 587)),
		[]expect{{addr: hostPort(serverV4, 25), banner: hostPort(serverV4, 25)}, {addr: hostPort(serverV6, 587), banner: hostPort(serverV6, 587)}})
	events.waitFor(t, 2, func(e Event) bool { return e.Action == enforce.ActionLogged && e.UID == w.user.UID })

	w.apply(w.ruleset(policy.ModeReject))
	w.check("reject again", w.connect(helperConnect, &w.user, hostPort(serverV4, 25)), []expect{{addr: hostPort(serverV4, 25), errno: w.refusal}})
}

// TestPrivilegedBPFIdentity: the uid is the real uid of the task calling
// connect(), not the socket's creator: the nft backend lets both through.
func TestPrivilegedBPFIdentity(t *testing.T) {
	w := newWorld(t)
	w.apply(w.ruleset(policy.ModeReject))
	addrs := []string{hostPort(serverV4, 25), hostPort(serverV6, 587)}
	want := []expect{{addr: addrs[0], errno: w.refusal}, {addr: addrs[1], errno: w.refusal}}
	w.check("setuid drop after socket()", w.connect(helperDropAfter, &w.user, addrs...), want)
	w.check("socket passed over a Unix socket", w.connect(helperSendFD, &w.user, addrs...), want)
	// Same paths for an allowed user still work.
	w.check("allowed user after a drop", w.connect(helperDropAfter, &w.allowed, addrs...),
		[]expect{{addr: addrs[0]}, {addr: addrs[1]}})
}

// TestPrivilegedBPFEvents: a refused attempt from a process in its own
// network namespace (a container) names that process.
func TestPrivilegedBPFEvents(t *testing.T) {
	w := newWorld(t)
	events := w.collectEvents()
	w.apply(w.ruleset(policy.ModeReject))
	w.waitPidNS()
	res := w.connect(helperConnect, &w.user, hostPort(serverV6, 465))
	exe, _ := os.Executable()
	comm := filepath.Base(exe)
	if len(comm) > 15 {
		comm = comm[:15]
	}
	// Pids are numbered in the reader's pid namespace (this test's, also
	// when make test-fresh runs it in a container); a kernel that cannot
	// (before 6.10) numbers them in the initial one, which a reader in
	// another namespace reports as 0, unknown.
	numbered := inInitialPidNamespace(t) || haveNsPid()
	pidOf := func(r helperResult) uint32 {
		if !numbered {
			return 0
		}
		return uint32(r.PID)
	}
	pid := pidOf(res)
	ours := func(port uint16) func(Event) bool {
		return func(e Event) bool {
			return e.UID == w.user.UID && e.DstPort == port && e.TGID == pid
		}
	}
	got := events.waitFor(t, 1, ours(465))[0]
	hostCookie := hostNetnsCookie(t)
	want := Event{
		Event: enforce.Event{UID: w.user.UID, HasUID: true, Family: 6, Dst: netip.MustParseAddr(serverV6), DstPort: 465, Action: enforce.ActionBlocked,
			PID: pid, TGID: pid, Comm: comm},
		Process: Process{GID: w.user.GID,
			NetnsCookie: got.NetnsCookie, SocketCookie: got.SocketCookie},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}), cmpopts.IgnoreFields(enforce.Event{}, "Time")); diff != "" {
		t.Errorf("event (-want +got):\n%s", diff)
	}
	if got.NetnsCookie == 0 || got.NetnsCookie == hostCookie {
		t.Errorf("netns cookie %d: want the client namespace's, not 0 or the host's (%d)", got.NetnsCookie, hostCookie)
	}
	if got.SocketCookie == 0 {
		t.Error("socket cookie 0")
	}
	if d := time.Since(got.Time); d < 0 || d > time.Minute {
		t.Errorf("event time %v is %v from now", got.Time, d)
	}
	// A mapped destination is reported as the IPv4 address it reaches.
	res = w.connect(helperConnect, &w.user, hostPort("::ffff:"+serverV4, 25))
	pid = pidOf(res)
	got = events.waitFor(t, 1, ours(25))[0]
	if got.Family != 4 || got.Dst != netip.MustParseAddr(serverV4) || !got.Mapped {
		t.Errorf("mapped event: family %d dst %s mapped %t, want 4 %s true", got.Family, got.Dst, got.Mapped, serverV4)
	}
}

// waitPidNS waits (bounded) until the event reader has named its pid
// namespace in sg_pidns: an attempt made before that is numbered in the
// initial namespace and reported with pid 0 (pidsOK), which is right but not
// what a test of the pids can check. Outside a pid namespace the map's zero
// value already is the reader's.
func (w *world) waitPidNS() {
	w.t.Helper()
	want, err := ownPidNS()
	if err != nil {
		w.t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if m, err := ebpf.LoadPinnedMap(filepath.Join(w.b.PinDir(), mapPidNS), nil); err == nil {
			var have [pidNSSize]byte
			lerr := m.Lookup(uint32(0), &have)
			m.Close()
			if lerr == nil && have == want {
				return
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the event reader did not name its pid namespace in %s within 5s", mapPidNS)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, bounded above
	}
}

// inInitialPidNamespace reports whether this process runs in the initial
// pid namespace, whose inode number is fixed (PROC_PID_INIT_INO).
func inInitialPidNamespace(t *testing.T) bool {
	t.Helper()
	link, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	return link == "pid:[4026531836]"
}

func hostNetnsCookie(t *testing.T) uint64 {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		t.Fatalf("SO_NETNS_COOKIE: %v", err)
	}
	return v
}

// eventLog collects EventsDetailed's output for a test.
type eventLog struct {
	mu     sync.Mutex
	events []Event
	added  chan struct{}
}

// collectEvents starts reading events once the backend has pins (the first
// Apply), until the test ends.
func (w *world) collectEvents() *eventLog {
	l := &eventLog{added: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			err := w.b.EventsDetailed(ctx, func(e Event) {
				l.mu.Lock()
				l.events = append(l.events, e)
				l.mu.Unlock()
				select {
				case l.added <- struct{}{}:
				default:
				}
			})
			if err != nil && !errors.Is(err, ErrNotInstalled) {
				w.t.Logf("EventsDetailed: %v", err)
			}
			select { // not installed yet: wait for Apply
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return l
}

// waitFor waits (at most 5 s) until n events match and returns them.
func (l *eventLog) waitFor(t *testing.T, n int, match func(Event) bool) []Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		l.mu.Lock()
		var got []Event
		for _, e := range l.events {
			if match(e) {
				got = append(got, e)
			}
		}
		all := len(l.events)
		l.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-l.added:
		case <-deadline:
			t.Fatalf("%d matching events after 5s, want %d (of %d events)", len(got), n, all)
		}
	}
}

// TestPrivilegedBPFCoexistence: programs attached to the same cgroup by
// someone else, before smtpguard and after, keep running, and smtpguard's
// refusal still wins.
func TestPrivilegedBPFCoexistence(t *testing.T) {
	w := newWorld(t)
	before, beforeCount := testutil.CounterProgram(t)
	l1, err := link.AttachCgroup(link.CgroupOptions{Path: w.cg.Path, Attach: ebpf.AttachCGroupInet4Connect, Program: before})
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	w.apply(w.ruleset(policy.ModeReject))
	after, afterCount := testutil.CounterProgram(t)
	l2, err := link.AttachCgroup(link.CgroupOptions{Path: w.cg.Path, Attach: ebpf.AttachCGroupInet4Connect, Program: after})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	w.apply(w.ruleset(policy.ModeReject)) // an Apply must not disturb them either
	w.check("with two other programs", w.connect(helperConnect, &w.user, hostPort(serverV4, 80), hostPort(serverV4, 25)),
		[]expect{{addr: hostPort(serverV4, 80)}, {addr: hostPort(serverV4, 25), errno: w.refusal}})
	if b, a := testutil.ConnectCount(t, beforeCount), testutil.ConnectCount(t, afterCount); b == 0 || a == 0 {
		t.Errorf("other programs ran %d (attached before) and %d (after) times, want both at least once", b, a)
	}
	if err := w.b.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	progs, err := CgroupPrograms(w.cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got := progs[ebpf.AttachCGroupInet4Connect.String()]; len(got) != 2 {
		t.Errorf("after Remove the cgroup runs %d connect4 programs, want the other 2", len(got))
	}
}

// TestPrivilegedBPFDrift: a link detached from outside is drift that Verify
// names and Apply repairs; a changed map element too. Policy changes are map
// updates: the programs are never reloaded.
func TestPrivilegedBPFDrift(t *testing.T) {
	w := newWorld(t)
	rs := w.ruleset(policy.ModeReject)
	w.apply(rs)
	ids := func() map[string][]ebpf.ProgramID {
		p, err := CgroupPrograms(w.cg.Path)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := ids()

	l, err := link.LoadPinnedLink(filepath.Join(w.b.PinDir(), pinLink4), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	w.check("link detached", w.connect(helperConnect, &w.user, hostPort(serverV4, 25)), []expect{{addr: hostPort(serverV4, 25)}})
	uids, err := ebpf.LoadPinnedMap(filepath.Join(w.b.PinDir(), mapUIDs), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer uids.Close()
	if err := uids.Update(u32Key(w.user.UID), []byte{1}, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	d, err := w.b.Verify(context.Background(), rs)
	if err != nil {
		t.Fatal(err)
	}
	wantProblems := []string{
		"link of sg_connect4 is detached from its cgroup",
		fmt.Sprintf("cgroup %s does not run sg_connect4", w.cg.Path),
		fmt.Sprintf("sg_allowed_uids has unexpected uid %d", w.user.UID),
	}
	if diff := cmp.Diff(wantProblems, d.Problems); diff != "" {
		t.Errorf("Verify with a detached link and an extra uid (-want +got):\n%s", diff)
	}
	w.apply(rs)
	w.check("repaired", w.connect(helperConnect, &w.user, hostPort(serverV4, 25)), []expect{{addr: hostPort(serverV4, 25), errno: w.refusal}})

	// A policy change is map elements only.
	progs := ids()
	rs.Ports = []uint16{25, 2525}
	w.apply(rs)
	if diff := cmp.Diff(progs, ids()); diff != "" {
		t.Errorf("a policy change reloaded programs (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(first[ebpf.AttachCGroupInet6Connect.String()], progs[ebpf.AttachCGroupInet6Connect.String()]); diff != "" {
		t.Errorf("repairing connect4 touched connect6 (-before +after):\n%s", diff)
	}
	w.check("587 no longer restricted", w.connect(helperConnect, &w.user, hostPort(serverV4, 587)), []expect{{addr: hostPort(serverV4, 587)}})
}

// TestPrivilegedBPFLifecycle: enforcement outlives the backend value (pins),
// Remove leaves no pins and no links, and Remove of nothing is success.
func TestPrivilegedBPFLifecycle(t *testing.T) {
	w := newWorld(t)
	if present, err := w.b.Present(context.Background()); err != nil || present {
		t.Fatalf("Present before Apply = %t, %v", present, err)
	}
	if err := w.b.Probe(context.Background()); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if present, _ := w.b.Present(context.Background()); present {
		t.Fatal("Probe left pins")
	}
	if progs, _ := CgroupPrograms(w.cg.Path); len(progs[ebpf.AttachCGroupInet4Connect.String()])+len(progs[ebpf.AttachCGroupInet6Connect.String()]) != 0 {
		t.Fatalf("Probe attached to the cgroup: %v", progs)
	}
	if children, _ := filepath.Glob(filepath.Join(w.cg.Path, "smtpguard-probe-*")); len(children) != 0 {
		t.Fatalf("Probe left its throwaway cgroups: %v", children)
	}
	w.apply(w.ruleset(policy.ModeReject))
	// A new backend value (a new process) sees the same state.
	again := New(Config{CgroupPath: w.cg.Path, BPFFS: w.bpffs, LocalAddrs: w.b.cfg.LocalAddrs})
	if d, err := again.Verify(context.Background(), w.ruleset(policy.ModeReject)); err != nil || !d.InSync() {
		t.Fatalf("Verify from a new backend: %v %v", d, err)
	}
	if present, _ := again.Present(context.Background()); !present {
		t.Fatal("Present after Apply = false")
	}
	w.check("enforced", w.connect(helperConnect, &w.user, hostPort(serverV4, 25)), []expect{{addr: hostPort(serverV4, 25), errno: w.refusal}})
	if err := again.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	// maps.debug and progs.debug are the kernel's own (bpf_preload) on
	// every bpf mount; pins cannot have dots in their names.
	entries, _ := os.ReadDir(w.bpffs)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".debug") {
			t.Errorf("left in %s after Remove: %s", w.bpffs, e.Name())
		}
	}
	progs, err := CgroupPrograms(w.cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(progs[ebpf.AttachCGroupInet4Connect.String()]) + len(progs[ebpf.AttachCGroupInet6Connect.String()]); n != 0 {
		t.Errorf("programs still attached after Remove: %v", progs)
	}
	w.check("after Remove", w.connect(helperConnect, &w.user, hostPort(serverV4, 25)), []expect{{addr: hostPort(serverV4, 25)}})
	if err := again.Remove(context.Background()); err != nil {
		t.Errorf("Remove of nothing: %v", err)
	}
	d, err := again.Verify(context.Background(), w.ruleset(policy.ModeReject))
	if err != nil || d.InSync() {
		t.Errorf("Verify after Remove = %v, %v; want drift", d, err)
	}
}

// TestPrivilegedBPFRingDrops: when nobody reads and the ring is full, the
// connect is still refused at once and the lost events are counted, and
// Events reports them as enforce.ActionLost. A new ring size replaces the
// ring at the next Apply.
func TestPrivilegedBPFRingDrops(t *testing.T) {
	w := newWorld(t)
	w.b.cfg.RingSize = 4096 // one page: about 45 events
	rs := w.ruleset(policy.ModeReject)
	w.apply(rs)
	const n = 120
	addrs := make([]string, n)
	want := make([]expect, n)
	for i := range addrs {
		addrs[i] = hostPort(serverV4, 25)
		want[i] = expect{addr: addrs[i], errno: w.refusal}
	}
	w.check("with a full ring", w.connect(helperConnect, &w.user, addrs...), want)
	dropped, err := w.b.DroppedEvents()
	if err != nil {
		t.Fatal(err)
	}
	if dropped == 0 || dropped >= n {
		t.Fatalf("DroppedEvents = %d after %d events into a one-page ring, want some but not all", dropped, n)
	}
	// Events counts drops from when it starts. Its sink stalls the reader
	// on the first event, so the ring fills up again; the drop report comes
	// from its other goroutine.
	lost := make(chan enforce.Event, 1)
	stalled, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- w.b.Events(ctx, func(e enforce.Event) {
			if e.Action == enforce.ActionLost {
				select {
				case lost <- e:
				default:
				}
				return
			}
			once.Do(func() { close(stalled) })
			<-release
		})
	}()
	defer func() { close(release); cancel(); <-done }()
	select {
	case <-stalled:
	case <-time.After(5 * time.Second):
		t.Fatal("Events delivered none of the events in the ring")
	}
	w.check("with the reader stalled", w.connect(helperConnect, &w.user, addrs...), want)
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		after, _ := w.b.DroppedEvents()
		t.Fatalf("the drop counter went from %d to %d but Events reported no lost event", dropped, after)
	}

	// Another ring size: Apply replaces the ring, and stays in sync.
	w.b.cfg.RingSize = DefaultRingSize
	w.apply(rs)
	w.check("after replacing the ring", w.connect(helperConnect, &w.user, addrs[0]), want[:1])
}

// TestPrivilegedBPFUserNamespace: a process that is root in its own user
// namespace (rootless containers) is matched by its host uid.
func TestPrivilegedBPFUserNamespace(t *testing.T) {
	w := newWorld(t)
	w.apply(w.ruleset(policy.ModeReject))
	// The test user must be able to run the binary: go test's build
	// directory is root's alone.
	dir, err := os.MkdirTemp("", "sgt-bpf-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	copyExe := filepath.Join(dir, "bpf.test")
	if err := os.WriteFile(copyExe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	req := helperRequest{Mode: helperConnect, Addrs: []string{hostPort(serverV4, 25), hostPort(serverV6, 465), hostPort(serverV4, 80)}}
	body, _ := json.Marshal(req)
	cmd := w.cg.NetCommand(w.client, "setpriv", "--reuid", fmt.Sprint(w.user.UID), "--regid", fmt.Sprint(w.user.GID), "--clear-groups",
		"unshare", "--user", "--map-root-user", "--", copyExe)
	cmd.Env = append(os.Environ(), helperEnv+"="+string(body))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := w.cg.Start(cmd); err != nil {
		t.Fatal(err)
	}
	proc := testutil.Watch(cmd)
	select {
	case <-proc.Done():
	case <-time.After(time.Minute):
		proc.Kill()
		t.Fatal("helper in a user namespace still running after a minute")
	}
	if !cmd.ProcessState.Success() {
		t.Fatalf("helper in a user namespace: %v\n%s", cmd.ProcessState, stderr.String())
	}
	var res helperResult
	if err := json.Unmarshal(lastLine([]byte(stdout.String())), &res); err != nil || len(res.Results) != 3 {
		t.Fatalf("helper output %q: %v", stdout.String(), err)
	}
	w.check("root in a user namespace", res, []expect{
		{addr: req.Addrs[0], errno: w.refusal},
		{addr: req.Addrs[1], errno: w.refusal},
		{addr: req.Addrs[2]},
	})
}

// TestPrivilegedBPFMountsBPFFS: without a bpf file system Probe and Apply
// refuse, unless MountBPFFS lets Apply mount one.
func TestPrivilegedBPFMountsBPFFS(t *testing.T) {
	testutil.Privileged(t)
	cg := testutil.NewCgroup(t)
	dir := t.TempDir()
	cfg := Config{CgroupPath: cg.Path, BPFFS: dir, LocalAddrs: func() ([]netip.Prefix, error) { return nil, nil }}
	rs := policy.Ruleset{Mode: policy.ModeReject, Ports: []uint16{25}}
	b := New(cfg)
	if err := b.Probe(context.Background()); !errors.Is(err, enforce.ErrNotSupported) {
		t.Errorf("Probe without a bpf file system = %v, want ErrNotSupported", err)
	}
	if err := b.Apply(context.Background(), rs); err == nil {
		t.Fatal("Apply without a bpf file system and without MountBPFFS succeeded")
	}
	cfg.MountBPFFS = true
	b = New(cfg)
	if err := b.Probe(context.Background()); err != nil {
		t.Errorf("Probe with MountBPFFS: %v", err)
	}
	if err := b.Apply(context.Background(), rs); err != nil {
		t.Fatalf("Apply with MountBPFFS: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		t.Errorf("%s after Apply: type %#x, %v; want a bpf file system", dir, st.Type, err)
	}
	if err := b.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestPrivilegedBPFMovesCgroup: configuring another cgroup moves both links
// there at the next Apply (the new one attached before the old one goes),
// and Verify names the old attachment until then.
func TestPrivilegedBPFMovesCgroup(t *testing.T) {
	w := newWorld(t)
	rs := w.ruleset(policy.ModeReject)
	w.apply(rs)
	other := testutil.NewCgroup(t)
	moved := New(Config{CgroupPath: other.Path, BPFFS: w.bpffs, LocalAddrs: w.b.cfg.LocalAddrs})
	d, err := moved.Verify(context.Background(), rs)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Problems) != 4 || !strings.Contains(d.Problems[0], "is attached to cgroup id") {
		t.Errorf("Verify with another cgroup configured: %q, want each link named as attached elsewhere", d.Problems)
	}
	if err := moved.Apply(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	if d, err := moved.Verify(context.Background(), rs); err != nil || !d.InSync() {
		t.Fatalf("Verify after the move: %v, %v", d, err)
	}
	for path, want := range map[string]int{w.cg.Path: 0, other.Path: 1} {
		progs, err := CgroupPrograms(path)
		if err != nil {
			t.Fatal(err)
		}
		for hook, ids := range progs {
			if len(ids) != want {
				t.Errorf("cgroup %s runs %d %s programs, want %d", path, len(ids), hook, want)
			}
		}
	}
	w.check("old cgroup", w.connect(helperConnect, &w.user, hostPort(serverV4, 25)), []expect{{addr: hostPort(serverV4, 25)}})
	moved.Remove(context.Background())
}

// TestPrivilegedBPFForeignProgramPinned: a pinned program that is not this
// version's code is drift; Apply pins ours and moves the link onto it in
// place (BPF_LINK_UPDATE), without a moment unattached.
func TestPrivilegedBPFForeignProgramPinned(t *testing.T) {
	w := newWorld(t)
	rs := w.ruleset(policy.ModeReject)
	w.apply(rs)
	foreign, _ := testutil.CounterProgram(t)
	path := filepath.Join(w.b.PinDir(), pinProg4)
	l, err := link.LoadPinnedLink(filepath.Join(w.b.PinDir(), pinLink4), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := foreign.Pin(path); err != nil {
		t.Fatal(err)
	}
	if err := l.Update(foreign); err != nil {
		t.Fatal(err)
	}
	w.check("foreign program allows", w.connect(helperConnect, &w.user, hostPort(serverV4, 25)), []expect{{addr: hostPort(serverV4, 25)}})
	d, err := w.b.Verify(context.Background(), rs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(d.Problems, "program sg_connect4 is not this version's code") {
		t.Errorf("Verify with a foreign pinned program: %q", d.Problems)
	}
	w.apply(rs)
	after, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	if after.ID != before.ID {
		t.Errorf("Apply replaced link %d with %d, want the same link updated", before.ID, after.ID)
	}
	w.check("repaired", w.connect(helperConnect, &w.user, hostPort(serverV4, 25)), []expect{{addr: hostPort(serverV4, 25), errno: w.refusal}})
}

// TestPrivilegedBPFIncompatiblePinnedMap: a pinned map of another layout
// (another version) makes Apply fail saying what to do, and what was
// enforced stays enforced.
func TestPrivilegedBPFIncompatiblePinnedMap(t *testing.T) {
	w := newWorld(t)
	rs := w.ruleset(policy.ModeReject)
	w.apply(rs)
	path := filepath.Join(w.b.PinDir(), mapPorts)
	old, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close() // the programs still use it
	if err := old.Unpin(); err != nil {
		t.Fatal(err)
	}
	other, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 2, ValueSize: 1, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Pin(path); err != nil {
		t.Fatal(err)
	}
	rs2 := rs
	rs2.Ports = []uint16{80}
	err = w.b.Apply(context.Background(), rs2)
	if err == nil || !strings.Contains(err.Error(), "smtpguard disable") {
		t.Fatalf("Apply over an incompatible pinned map = %v, want an error saying to disable and enable", err)
	}
	w.check("still enforced", w.connect(helperConnect, &w.user, hostPort(serverV4, 25), hostPort(serverV4, 80)),
		[]expect{{addr: hostPort(serverV4, 25), errno: w.refusal}, {addr: hostPort(serverV4, 80), banner: hostPort(serverV4, 80)}})
	d, err := w.b.Verify(context.Background(), rs)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Problems) == 0 || !strings.HasPrefix(d.Problems[0], "map sg_ports has the wrong layout") {
		t.Errorf("Verify: %q, want the map's layout named", d.Problems)
	}
}
