package resolve

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/resolve/resolvetest"
)

func startServer(t *testing.T, ttl uint32) (*resolvetest.Server, string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	srv := resolvetest.New(ttl)
	go srv.Serve(pc)
	return srv, pc.LocalAddr().String()
}

func TestLookupHostWithTTL(t *testing.T) {
	srv, addr := startServer(t, 300)
	srv.Set("smtp.example.net", "192.0.2.2", "2001:db8::2", "192.0.2.3")
	r := &Resolver{Servers: []string{addr}, HostsPath: "/nonexistent"}
	addrs, ttl, err := r.LookupHost(context.Background(), "SMTP.example.net.")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("2001:db8::2")}
	if !slices.Equal(addrs, want) || ttl != 300*time.Second {
		t.Errorf("LookupHost() = %v, %v; want %v, 5m0s", addrs, ttl, want)
	}
	if _, _, err := r.LookupHost(context.Background(), "nowhere.example.net"); !errors.Is(err, ErrNoAddresses) {
		t.Errorf("LookupHost(unknown) = %v, want ErrNoAddresses", err)
	}
	srv.Fail(true)
	if _, _, err := r.LookupHost(context.Background(), "smtp.example.net"); err == nil || errors.Is(err, ErrNoAddresses) {
		t.Errorf("LookupHost() while the server fails = %v, want a server error", err)
	}
}

func TestHostsFileComesFirst(t *testing.T) {
	hosts := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(hosts, []byte("127.0.0.1 localhost\n192.0.2.9 relay.example.net relay # comment\n"), 0o644)
	r := &Resolver{HostsPath: hosts, Servers: []string{"127.0.0.1:1"}, Timeout: 100 * time.Millisecond}
	addrs, ttl, err := r.LookupHost(context.Background(), "relay.example.net")
	if err != nil || !slices.Equal(addrs, []netip.Addr{netip.MustParseAddr("192.0.2.9")}) || ttl != 0 {
		t.Errorf("LookupHost() from hosts = %v, %v, %v", addrs, ttl, err)
	}
}

func TestUnreachableServerTimesOut(t *testing.T) {
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	defer pc.Close()
	r := &Resolver{Servers: []string{pc.LocalAddr().String()}, HostsPath: "/nonexistent", Timeout: 100 * time.Millisecond}
	start := time.Now()
	if _, _, err := r.LookupHost(context.Background(), "smtp.example.net"); err == nil {
		t.Error("LookupHost() against a silent server succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("LookupHost() took %v against a silent server; the timeout is not honoured", took)
	}
}

func TestResolvConfServers(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(conf, []byte("search example.net\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n"), 0o644)
	r := &Resolver{ResolvConf: conf}
	if got := r.resolvConfServers(); !slices.Equal(got, []string{"192.0.2.53:53", "[2001:db8::53]:53"}) {
		t.Errorf("resolvConfServers() = %v", got)
	}
}
