//go:build linux

package bpf

import (
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// TestDecodeRateLimitedEvent: the rate-limited flag makes the action
// rate-limited whatever the mode did with the connection, and keeps the
// mapped flag.
func TestDecodeRateLimitedEvent(t *testing.T) {
	for _, mode := range []byte{modeReject, modeRedirect, modeLog} {
		raw := make([]byte, eventSize)
		nativeEndian.PutUint32(raw[evFamily:], 4)
		nativeEndian.PutUint16(raw[evPort:], 25)
		raw[evAction] = mode
		raw[evFlags] = eventFlagMapped | eventFlagRateLimited
		ev, ok := decodeEvent(raw, func(uint64) time.Time { return time.Unix(0, 0) })
		if !ok || ev.Action != enforce.ActionRateLimited || !ev.Mapped {
			t.Errorf("mode %d: decodeEvent = %+v, %t; want rate-limited and mapped", mode, ev, ok)
		}
		raw[evFlags] = 0
		if ev, _ := decodeEvent(raw, func(uint64) time.Time { return time.Unix(0, 0) }); ev.Action == enforce.ActionRateLimited {
			t.Errorf("mode %d without the flag: rate-limited", mode)
		}
	}
}
