package remote

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/policy"
)

var _ enforce.Backend = (*Backend)(nil)

var prefixEqual = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestRulesetRoundTrip(t *testing.T) {
	// Guard: a field added to Ruleset or ExceptionRule must be added to the
	// wire types too, or the daemon would enforce less than the CLI meant.
	if n := reflect.TypeFor[policy.Ruleset]().NumField(); n != 8 {
		t.Fatalf("policy.Ruleset has %d fields, wireRuleset carries 8: add the new one to wire.go and to this test", n)
	}
	if n := reflect.TypeFor[policy.UIDRate]().NumField() + reflect.TypeFor[policy.Rate]().NumField(); n != 4 {
		t.Fatalf("policy.UIDRate and Rate have %d fields, wireRate carries 3 (of 4): add the new one to wire.go and to this test", n)
	}
	if n := reflect.TypeFor[policy.ExceptionRule]().NumField(); n != 3 {
		t.Fatalf("policy.ExceptionRule has %d fields, wireException carries 3: add the new one to wire.go and to this test", n)
	}
	tests := []struct {
		name string
		rs   policy.Ruleset
	}{
		{"zero", policy.Ruleset{}},
		{"empty lists stay empty, not nil", policy.Ruleset{Ports: []uint16{}, UIDs: []uint32{}, Exceptions: []policy.ExceptionRule{}, RateLimits: []policy.UIDRate{}}},
		{"every field", policy.Ruleset{
			Mode: policy.ModeRedirect, Ports: []uint16{25, 465, 587}, AllowLocal: true, Cgroup: "/sys/fs/cgroup/smtpguard.slice",
			UIDs: []uint32{0, 101, 1001, 4294967294},
			Exceptions: []policy.ExceptionRule{
				{UID: 1001, Dst: netip.MustParsePrefix("192.0.2.0/24"), Port: 25},
				{UID: 1001, Dst: netip.MustParsePrefix("192.0.2.7/32"), Port: 587},
				{UID: 1002, Dst: netip.MustParsePrefix("2001:db8::/32"), Port: 465},
				{UID: 1002, Dst: netip.MustParsePrefix("2001:db8::3/128"), Port: 25},
				{UID: 1003, Dst: netip.MustParsePrefix("::ffff:192.0.2.0/120"), Port: 25},
				{UID: 1004, Dst: netip.MustParsePrefix("192.0.2.9/24"), Port: 25}, // unmasked: kept as is
				{UID: 1005, Dst: netip.MustParsePrefix("0.0.0.0/0"), Port: 2525},
			},
			RateLimits: []policy.UIDRate{
				{UID: 1001, Rate: policy.Rate{Count: 5, Period: time.Minute}},
				{UID: 1002, Rate: policy.Rate{Count: 2, Period: 2 * time.Second}},
				{UID: 1005, Rate: policy.Rate{Count: 100, Period: 24 * time.Hour}},
			},
			ExplainPort: 11025,
		}},
		{"log mode, local restricted", policy.Ruleset{Mode: policy.ModeLog, Ports: []uint16{25}, UIDs: []uint32{0}}},
		{"explain mode", policy.Ruleset{Mode: policy.ModeExplain, Ports: []uint16{25, 465}, UIDs: []uint32{0}, ExplainPort: 11025}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := json.Marshal(request{Op: opApply, Backend: "nft", Ruleset: toWire(tt.rs)})
			if err != nil {
				t.Fatal(err)
			}
			var req request
			if err := json.Unmarshal(data, &req); err != nil {
				t.Fatal(err)
			}
			got := fromWire(req.Ruleset)
			if diff := cmp.Diff(tt.rs, got, prefixEqual); diff != "" {
				t.Errorf("ruleset after the wire (-want +got):\n%s\nwire: %s", diff, data)
			}
		})
	}
}

// serve runs srv on a socket in a fresh directory until the test ends.
func serve(t *testing.T, srv *Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), SocketFile)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve() = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10s of cancellation")
		}
	})
	return path
}

func TestBackendOverSocket(t *testing.T) {
	f := fake.New("nft")
	socket := serve(t, &Server{Backends: []enforce.Backend{f}, Info: func() Info { return Info{Recording: true} }})
	ctx := context.Background()
	b := New(socket, fake.New("nft"))

	info, err := Ping(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Info{PID: os.Getpid(), Recording: true, Backends: []string{"nft"}}, info); diff != "" {
		t.Errorf("Ping() (-want +got):\n%s", diff)
	}
	if err := b.Probe(ctx); err != nil {
		t.Errorf("Probe() = %v", err)
	}
	rs := policy.Ruleset{Mode: policy.ModeReject, Ports: []uint16{25, 587}, UIDs: []uint32{0, 1001},
		Exceptions: []policy.ExceptionRule{{UID: 1002, Dst: netip.MustParsePrefix("2001:db8::/64"), Port: 587}}}
	if err := b.Apply(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&rs, f.Installed(), prefixEqual); diff != "" {
		t.Errorf("daemon's backend after Apply (-want +got):\n%s", diff)
	}
	d, err := b.Verify(ctx, rs)
	if err != nil || !d.InSync() {
		t.Errorf("Verify(applied) = %v, %v; want in sync", d, err)
	}
	other := rs.Clone()
	other.UIDs = []uint32{0}
	if d, err := b.Verify(ctx, other); err != nil || d.InSync() {
		t.Errorf("Verify(other) = %v, %v; want drift", d, err)
	}
	if err := b.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if f.Installed() != nil {
		t.Error("Remove through the socket left rules in the daemon's backend")
	}
	if diff := cmp.Diff([]string{"probe", "apply", "verify", "verify", "remove"}, f.Calls()); diff != "" {
		t.Errorf("calls reaching the daemon's backend (-want +got):\n%s", diff)
	}
	if got, want := b.Render(rs), fake.New("nft").Render(rs); got != want {
		t.Errorf("Render() = %q, want the local backend's %q", got, want)
	}

	// Errors keep their message, and ErrNotSupported stays matchable.
	f.FailApply(errors.New("netlink: no buffer space (modprobe nf_tables)"))
	if err := b.Apply(ctx, rs); err == nil || err.Error() != "netlink: no buffer space (modprobe nf_tables)" {
		t.Errorf("Apply() with a failing daemon backend = %v", err)
	}
	f.FailProbe(errors.New("nf_tables: " + enforce.ErrNotSupported.Error()))
	if err := b.Probe(ctx); err == nil || errors.Is(err, enforce.ErrNotSupported) {
		t.Errorf("Probe() = %v: a plain error must not become ErrNotSupported", err)
	}
	f.FailProbe(errors.Join(errors.New("nf_tables missing"), enforce.ErrNotSupported))
	if err := b.Probe(ctx); !errors.Is(err, enforce.ErrNotSupported) {
		t.Errorf("Probe() = %v, want it to wrap ErrNotSupported", err)
	}
	if err := New(socket, fake.New("bpf")).Apply(ctx, rs); err == nil || !strings.Contains(err.Error(), `no backend "bpf"`) {
		t.Errorf("Apply() for a backend the daemon lacks = %v", err)
	}
	if err := b.Watch(ctx, func() {}); !errors.Is(err, enforce.ErrNotSupported) {
		t.Errorf("Watch() = %v, want ErrNotSupported", err)
	}
	if err := b.Events(ctx, func(enforce.Event) {}); !errors.Is(err, enforce.ErrNotSupported) {
		t.Errorf("Events() = %v, want ErrNotSupported", err)
	}
}

func TestNoDaemon(t *testing.T) {
	dir := t.TempDir()
	if _, err := Ping(context.Background(), filepath.Join(dir, SocketFile)); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("Ping(missing socket) = %v, want ErrNoDaemon", err)
	}
	// A daemon killed with SIGKILL leaves its socket file behind.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("stale socket file: %v", err)
	}
	if err := New(stale, fake.New("nft")).Apply(context.Background(), policy.Ruleset{}); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("Apply(stale socket) = %v, want ErrNoDaemon", err)
	}
	// The next daemon takes the stale file over.
	ln2, err := Listen(stale)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln2.Close()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after the listener closed: %v, want removed", err)
	}
}

func TestListenIsRootOnlyAndKeepsOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketFile)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with mode 0600", fi.Mode())
	}
	regular := filepath.Join(t.TempDir(), SocketFile)
	os.WriteFile(regular, []byte("keep"), 0o600)
	if _, err := Listen(regular); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file = %v, want a refusal", err)
	}
	if data, _ := os.ReadFile(regular); string(data) != "keep" {
		t.Error("Listen replaced a regular file")
	}
}

func TestRequestsAreBounded(t *testing.T) {
	f := fake.New("nft")
	socket := serve(t, &Server{Backends: []enforce.Backend{f}, MaxRequest: 1 << 10, IdleTimeout: 100 * time.Millisecond})
	ctx := context.Background()
	big := policy.Ruleset{UIDs: make([]uint32, 1000)}
	for i := range big.UIDs {
		big.UIDs[i] = uint32(10000 + i)
	}
	if err := New(socket, f).Apply(ctx, big); err == nil || !strings.Contains(err.Error(), "at most 1024 bytes") {
		t.Errorf("Apply() of an oversized request = %v, want a refusal naming the bound", err)
	}
	if f.Installed() != nil {
		t.Error("an oversized request reached the backend")
	}

	// A connection that sends nothing is answered and closed after the idle
	// timeout, not held open.
	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	data, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("idle connection: %v (want the daemon to answer and close it)", err)
	}
	if !strings.Contains(string(data), "bad request") {
		t.Errorf("idle connection got %q, want a bad request answer", data)
	}
	// The server still answers afterwards.
	if _, err := Ping(ctx, socket); err != nil {
		t.Errorf("Ping() after bad requests = %v", err)
	}
}

func TestMalformedRequests(t *testing.T) {
	f := fake.New("nft")
	socket := serve(t, &Server{Backends: []enforce.Backend{f}})
	tests := []struct {
		name, body, want string
	}{
		{"not JSON", "hello\n", "bad request"},
		{"unknown operation", `{"op":"flush","backend":"nft"}` + "\n", `unknown operation "flush"`},
		{"apply without a ruleset", `{"op":"apply","backend":"nft"}` + "\n", "apply without a ruleset"},
		{"bad prefix", `{"op":"apply","backend":"nft","ruleset":{"exceptions":[{"uid":1,"dst":"192.0.2.0/99","port":25}]}}` + "\n", "bad request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("unix", socket)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, tt.body)
			var resp response
			if err := json.NewDecoder(conn).Decode(&resp); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(resp.Error, tt.want) {
				t.Errorf("answer = %+v, want an error containing %q", resp, tt.want)
			}
		})
	}
	if f.Installed() != nil || len(f.Calls()) != 0 {
		t.Errorf("malformed requests reached the backend: %v", f.Calls())
	}
}
