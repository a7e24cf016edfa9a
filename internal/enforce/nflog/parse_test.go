//go:build linux

package nflog

import (
	"net/netip"
	"testing"

	"github.com/florianl/go-nflog/v2"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// syn4 and syn6 are the first bytes of SYNs as NFLOG copies them.
func syn4(dst [4]byte, port uint16) []byte {
	p := make([]byte, 40)
	p[0] = 0x45 // version 4, 20-byte header
	p[9] = 6    // TCP
	copy(p[16:20], dst[:])
	p[22], p[23] = byte(port>>8), byte(port)
	return p
}

func syn6(dst [16]byte, port uint16) []byte {
	p := make([]byte, 60)
	p[0] = 0x60
	p[6] = 6 // next header TCP
	copy(p[24:40], dst[:])
	p[42], p[43] = byte(port>>8), byte(port)
	return p
}

func TestParseEvent(t *testing.T) {
	uid := uint32(1001)
	str := func(s string) *string { return &s }
	bytes := func(b []byte) *[]byte { return &b }
	tests := []struct {
		name   string
		attr   nflog.Attribute
		want   enforce.Event
		wantOK bool
	}{
		{"ipv4 blocked", nflog.Attribute{Prefix: str("smtpguard blocked"), UID: &uid, Payload: bytes(syn4([4]byte{192, 0, 2, 2}, 25))},
			enforce.Event{UID: 1001, HasUID: true, Family: 4, Dst: netip.MustParseAddr("192.0.2.2"), DstPort: 25, Action: enforce.ActionBlocked}, true},
		{"ipv6 redirected", nflog.Attribute{Prefix: str("smtpguard redirected"), UID: &uid, Payload: bytes(syn6(netip.MustParseAddr("2001:db8::2").As16(), 587))},
			enforce.Event{UID: 1001, HasUID: true, Family: 6, Dst: netip.MustParseAddr("2001:db8::2"), DstPort: 587, Action: enforce.ActionRedirected}, true},
		{"logged without a socket owner", nflog.Attribute{Prefix: str("smtpguard logged"), Payload: bytes(syn4([4]byte{192, 0, 2, 3}, 465))},
			enforce.Event{Family: 4, Dst: netip.MustParseAddr("192.0.2.3"), DstPort: 465, Action: enforce.ActionLogged}, true},
		{"truncated", nflog.Attribute{Payload: bytes([]byte{0x45, 0, 0})}, enforce.Event{}, false},
		{"not tcp", nflog.Attribute{Payload: bytes(func() []byte { p := syn4([4]byte{1, 2, 3, 4}, 25); p[9] = 17; return p }())}, enforce.Event{}, false},
		{"no payload", nflog.Attribute{UID: &uid}, enforce.Event{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseEvent(tt.attr)
			got.Time = tt.want.Time
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("parseEvent() = %+v, %t; want %+v, %t", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
