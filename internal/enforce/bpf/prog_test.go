//go:build linux

package bpf

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// TestProgramsLoad loads both programs (with and without bpf_set_retval)
// where the test may: as root, the kernel's verifier accepts them or the
// test prints its log.
func TestProgramsLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading bpf programs needs root")
	}
	for _, opts := range []progOptions{{}, {setRetval: true}, {nsPid: true}, {setRetval: true, nsPid: true}} {
		if opts.setRetval && !haveSetRetval() || opts.nsPid && !haveNsPid() {
			t.Logf("%+v: not on this kernel", opts)
			continue
		}
		for _, fam := range []int{4, 6} {
			b := New(Config{})
			spec := b.collectionSpec(false)
			spec.Programs = map[string]*ebpf.ProgramSpec{"p": connectProgram(fam, opts)}
			coll, err := ebpf.NewCollection(spec)
			if err != nil {
				var ve *ebpf.VerifierError
				if errors.As(err, &ve) {
					t.Fatalf("family %d %+v: %+v", fam, opts, ve)
				}
				t.Fatalf("family %d %+v: %v", fam, opts, err)
			}
			coll.Close()
		}
	}
}

func TestDecodeEvent(t *testing.T) {
	raw := make([]byte, eventSize)
	nativeEndian.PutUint64(raw[evBootNs:], 42)
	nativeEndian.PutUint64(raw[evPidTgid:], uint64(4321)<<32|4322)
	nativeEndian.PutUint64(raw[evUIDGID:], uint64(1002)<<32|1001)
	nativeEndian.PutUint64(raw[evSockCookie:], 77)
	nativeEndian.PutUint64(raw[evNetnsCookie:], 88)
	nativeEndian.PutUint32(raw[evFamily:], 4)
	nativeEndian.PutUint16(raw[evPort:], 587)
	raw[evAction] = modeRedirect
	raw[evFlags] = eventFlagMapped
	copy(raw[evAddr:], []byte{192, 0, 2, 9})
	copy(raw[evComm:], "php-fpm8.2\x00junk")
	wall := time.Unix(1000, 0)
	got, ok := decodeEvent(raw, func(ns uint64) time.Time { return wall.Add(time.Duration(ns)) })
	if !ok {
		t.Fatal("decodeEvent refused a well-formed event")
	}
	want := Event{
		Event: enforce.Event{Time: wall.Add(42), UID: 1001, HasUID: true, Family: 4, Dst: netip.MustParseAddr("192.0.2.9"),
			DstPort: 587, Action: enforce.ActionRedirected, PID: 4322, TGID: 4321, Comm: "php-fpm8.2"},
		Process: Process{GID: 1002, NetnsCookie: 88, SocketCookie: 77, Mapped: true},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("decodeEvent (-want +got):\n%s", diff)
	}
	if _, ok := decodeEvent(raw[:eventSize-1], func(uint64) time.Time { return wall }); ok {
		t.Error("decodeEvent accepted a short record")
	}
	raw[evAction] = 9
	if _, ok := decodeEvent(raw, func(uint64) time.Time { return wall }); ok {
		t.Error("decodeEvent accepted an unknown action")
	}
}

// TestWatchNotSupported: the daemon must fall back to periodic verification.
func TestWatchNotSupported(t *testing.T) {
	if err := New(Config{}).Watch(context.Background(), func() {}); !errors.Is(err, enforce.ErrNotSupported) {
		t.Errorf("Watch = %v, want an error wrapping ErrNotSupported", err)
	}
}

func TestFactsAreExplicit(t *testing.T) {
	f := New(Config{}).Facts()
	if f.ChangeNotifications || len(f.CannotStop) == 0 || len(f.Covers) == 0 {
		t.Errorf("Facts = %+v", f)
	}
	if f.RefusalErrno != "ECONNREFUSED" && f.RefusalErrno != "EPERM" {
		t.Errorf("RefusalErrno %q", f.RefusalErrno)
	}
	for _, gap := range []string{"seteuid", "SQPOLL", "personality"} {
		if !slices.ContainsFunc(f.CannotStop, func(s string) bool { return strings.Contains(s, gap) }) {
			t.Errorf("CannotStop does not mention %s: %v", gap, f.CannotStop)
		}
	}
}
