package mta

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseProcAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"0100007F:09DD", "127.0.0.1:2525"},
		{"00000000:0019", "0.0.0.0:25"},
		{"00000000000000000000000001000000:0019", "[::1]:25"},
		{"B80D0120000000000000000001000000:024B", "[2001:db8::1]:587"},
		{"0000000000000000FFFF00000100007F:0019", "127.0.0.1:25"},
	} {
		got, err := parseProcAddr(tc.in)
		if err != nil {
			t.Errorf("parseProcAddr(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(netip.MustParseAddrPort(tc.want), got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
			t.Errorf("parseProcAddr(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
	for _, bad := range []string{"", "0100007F", "zz00007F:0019", "0100007F:zz", "01007F:0019"} {
		if _, err := parseProcAddr(bad); err == nil {
			t.Errorf("parseProcAddr(%q) succeeded, want an error", bad)
		}
	}
}
