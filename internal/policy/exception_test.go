package policy

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDestination(t *testing.T) {
	tests := []struct {
		in, want string
		host     bool
		wantErr  string
	}{
		{in: "192.0.2.2", want: "192.0.2.2"},
		{in: "192.0.2.7/24", want: "192.0.2.0/24"},
		{in: "2001:DB8::2", want: "2001:db8::2"},
		{in: "2001:db8::/32", want: "2001:db8::/32"},
		{in: "::ffff:192.0.2.2", want: "192.0.2.2"},
		{in: "::ffff:192.0.2.0/120", want: "192.0.2.0/24"},
		{in: "SMTP.SendGrid.net.", want: "smtp.sendgrid.net", host: true},
		{in: "", wantErr: "empty destination"},
		{in: "0.0.0.0/0", wantErr: "covers every address"},
		{in: "::/0", wantErr: "covers every address"},
		{in: "192.0.2.0/33", wantErr: "invalid CIDR"},
		{in: "smtp..example.net", wantErr: "neither an address"},
		{in: "-bad.example.net", wantErr: "neither an address"},
		{in: "relay example.net", wantErr: "neither an address"},
		{in: "fe80::1%eth0", wantErr: "has a zone"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, err := ParseDestination(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDestination(%q) = %+v, %v; want error %q", tt.in, d, err, tt.wantErr)
				}
				return
			}
			if err != nil || d.Canonical != tt.want || d.IsHost() != tt.host {
				t.Errorf("ParseDestination(%q) = %+v, %v; want %q host=%t", tt.in, d, err, tt.want, tt.host)
			}
		})
	}
}

func TestAddAndRemoveExceptions(t *testing.T) {
	p := Default()
	alice := Principal{Kind: KindUser, Name: "alice", ID: 1001}
	e := Exception{Principal: alice, Destination: "smtp.example.net", Ports: []uint16{587}}
	if err := p.AddException(e); err != nil {
		t.Fatal(err)
	}
	if err := p.AddException(e); !errors.Is(err, ErrAlreadyAllowed) {
		t.Errorf("AddException(same) = %v, want ErrAlreadyAllowed", err)
	}
	// Same principal and destination with other ports replaces the ports.
	if err := p.AddException(Exception{Principal: Principal{Kind: KindUser, ID: 1001, ByID: true}, Destination: "smtp.example.net", Ports: []uint16{465, 587}}); err != nil {
		t.Fatal(err)
	}
	if len(p.Exceptions) != 1 || !slices.Equal(p.Exceptions[0].Ports, []uint16{465, 587}) {
		t.Errorf("exceptions = %+v, want one with ports 465,587", p.Exceptions)
	}
	if err := p.RemoveException(alice, "other.example.net"); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("RemoveException(unknown destination) = %v, want ErrNotAllowed", err)
	}
	if err := p.RemoveException(alice, "smtp.example.net"); err != nil || len(p.Exceptions) != 0 {
		t.Errorf("RemoveException() = %v, left %+v", err, p.Exceptions)
	}
	if err := CheckExceptionPorts([]uint16{2525}, []uint16{25, 465, 587}); err == nil || !strings.Contains(err.Error(), "port 2525 is not restricted") {
		t.Errorf("CheckExceptionPorts(2525) = %v", err)
	}
}

func TestResolveExceptions(t *testing.T) {
	d := testDirectory(t)
	p := Default()
	p.Exceptions = []Exception{
		{Principal: Principal{Kind: KindUser, Name: "alice"}, Destination: "smtp.example.net", Ports: []uint16{587}},
		{Principal: Principal{Kind: KindGroup, Name: "mailers"}, Destination: "198.51.100.0/24", Ports: []uint16{25}},
		// Covered by the /24 for carol (a supplementary member of mailers):
		{Principal: Principal{Kind: KindUser, Name: "carol"}, Destination: "198.51.100.7", Ports: []uint16{25}},
		{Principal: Principal{Kind: KindUser, Name: "alice"}, Destination: "2001:db8::25"}, // every restricted port
		{Principal: Principal{Kind: KindUser, Name: "alice"}, Destination: "nowhere.example.net"},
		{Principal: Principal{Kind: KindUser, Name: "gone"}, Destination: "192.0.2.9"},
	}
	answers := func(host string) ([]netip.Addr, bool) {
		if host == "smtp.example.net" {
			return []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::2")}, true
		}
		return nil, false
	}
	rules, unresolved := ResolveExceptions(p, d, answers)
	pf := netip.MustParsePrefix
	want := []ExceptionRule{
		{UID: 1001, Dst: pf("2001:db8::25/128"), Port: 25},
		{UID: 1001, Dst: pf("2001:db8::25/128"), Port: 465},
		{UID: 1001, Dst: pf("192.0.2.2/32"), Port: 587},
		{UID: 1001, Dst: pf("2001:db8::2/128"), Port: 587},
		{UID: 1001, Dst: pf("2001:db8::25/128"), Port: 587},
		{UID: 1001, Dst: pf("2001:db8::25/128"), Port: 2525}, // every restricted port: the default's 2525 too
		{UID: 1002, Dst: pf("198.51.100.0/24"), Port: 25},
		{UID: 1003, Dst: pf("198.51.100.0/24"), Port: 25},
	}
	if diff := cmp.Diff(want, rules, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("ResolveExceptions() (-want +got):\n%s", diff)
	}
	if len(unresolved) != 2 || !strings.Contains(unresolved[0], "nowhere.example.net does not resolve") || !strings.Contains(unresolved[1], `user "gone" no longer exists`) {
		t.Errorf("unresolved = %q", unresolved)
	}
}

func TestTraceWithExceptions(t *testing.T) {
	rs := Ruleset{Mode: ModeReject, Ports: []uint16{25, 465, 587}, UIDs: []uint32{0}, Exceptions: []ExceptionRule{
		{UID: 1001, Dst: netip.MustParsePrefix("192.0.2.2/32"), Port: 587},
		{UID: 1001, Dst: netip.MustParsePrefix("2001:db8:1::/48"), Port: 25},
	}}
	tests := []struct {
		name string
		pkt  Packet
		want Verdict
	}{
		{"the relay on its port", Packet{UID: 1001, Dst: netip.MustParseAddr("192.0.2.2"), DstPort: 587}, VerdictAccept},
		{"the relay as a mapped address", Packet{UID: 1001, Dst: netip.MustParseAddr("::ffff:192.0.2.2"), DstPort: 587}, VerdictAccept},
		{"the relay on another port", Packet{UID: 1001, Dst: netip.MustParseAddr("192.0.2.2"), DstPort: 25}, VerdictReject},
		{"another server", Packet{UID: 1001, Dst: netip.MustParseAddr("192.0.2.3"), DstPort: 587}, VerdictReject},
		{"inside the v6 CIDR", Packet{UID: 1001, Dst: netip.MustParseAddr("2001:db8:1::99"), DstPort: 25}, VerdictAccept},
		{"another user", Packet{UID: 1002, Dst: netip.MustParseAddr("192.0.2.2"), DstPort: 587}, VerdictReject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rs.Trace(tt.pkt); got != tt.want {
				t.Errorf("Trace(%+v) = %s, want %s", tt.pkt, got, tt.want)
			}
		})
	}
}

func TestExceptionsInPolicyFiles(t *testing.T) {
	d := testDirectory(t)
	for _, format := range []Format{FormatTOML, FormatYAML} {
		p := Default()
		p.Exceptions = []Exception{
			{Principal: Principal{Kind: KindUser, Name: "alice", ID: 1001}, Destination: "smtp.sendgrid.net", Ports: []uint16{587}},
			{Principal: Principal{Kind: KindGroup, Name: "mailers", ID: 2000}, Destination: "192.0.2.0/24"},
		}
		data, err := ToFile(p).Encode(format)
		if err != nil {
			t.Fatal(err)
		}
		f, err := DecodeFile(data, format)
		if err != nil {
			t.Fatalf("%s: %v\n%s", format, err, data)
		}
		got, err := f.Policy(d)
		if err != nil || !got.Equal(p) {
			t.Errorf("%s round trip = %+v, %v\n%s", format, got.Exceptions, err, data)
		}
	}
	bad := "version = 1\nenabled = false\n[[exceptions]]\nuser = \"alice\"\ngroup = \"mailers\"\nto = \"x.example.net\"\n[[exceptions]]\nuser = \"alice\"\nto = \"0.0.0.0/0\"\n[[exceptions]]\nuser = \"alice\"\nto = \"x.example.net\"\nports = [2525]\n"
	f, err := DecodeFile([]byte(bad), FormatTOML)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Policy(d)
	for _, want := range []string{"exceptions[0]: give either user or group", "exceptions[1]: to: CIDR", "exceptions[2]: ports: port 2525 is not restricted"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("File.Policy() = %v, want %q", err, want)
		}
	}
}
