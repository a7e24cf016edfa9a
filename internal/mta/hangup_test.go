package mta

import (
	"net/netip"
	"os"
	"path/filepath"
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

// fakeProc writes files of a fake /proc/PID and returns the proc root.
func fakeProc(t *testing.T, pid string, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, pid, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCatchesHangup(t *testing.T) {
	for _, tc := range []struct {
		sigcgt string
		want   bool
	}{
		{"0000000000004001", true},  // HUP and CHLD: a daemon in its main loop
		{"0000000000004000", false}, // between exec and installing its handler
		{"ffffffffffffffff", true},
	} {
		proc := fakeProc(t, "42", map[string]string{"status": "Name:\texim4\nSigIgn:\t0000000000000001\nSigCgt:\t" + tc.sigcgt + "\n"})
		if got := catchesHangup(proc, 42); got != tc.want {
			t.Errorf("SigCgt %s: catchesHangup = %v, want %v", tc.sigcgt, got, tc.want)
		}
	}
	if catchesHangup(t.TempDir(), 42) {
		t.Error("catchesHangup of a missing process = true")
	}
}

func TestListenAddress(t *testing.T) {
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tcp := header +
		"   0: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000   100        0 1111 1 0 100 0 0 10 0\n" +
		"   1: 00000000:024B 00000000:0000 0A 00000000:00000000 00:00000000 00000000   100        0 2222 1 0 100 0 0 10 0\n" +
		"   2: 0100007F:0019 0100007F:D431 01 00000000:00000000 00:00000000 00000000   100        0 3333 1 0 100 0 0 10 0\n"
	tcp6 := header +
		"   0: 00000000000000000000000000000000:0019 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   100        0 4444 1 0 100 0 0 10 0\n"
	proc := fakeProc(t, "42", map[string]string{"net/tcp": tcp, "net/tcp6": tcp6})
	for _, tc := range []struct {
		inodes []string
		want   string
	}{
		{[]string{"1111"}, "127.0.0.1:25"},
		{[]string{"2222"}, "127.0.0.1:587"}, // wildcard: loopback
		{[]string{"4444"}, "[::1]:25"},
		{[]string{"4444", "1111"}, "127.0.0.1:25"}, // IPv4 first
	} {
		got, err := listenAddress(proc, 42, tc.inodes)
		if err != nil || got.String() != tc.want {
			t.Errorf("listenAddress(%v) = %v, %v; want %s", tc.inodes, got, err, tc.want)
		}
	}
	if _, err := listenAddress(proc, 42, []string{"3333"}); err == nil {
		t.Error("listenAddress of an established, not listening, socket succeeded")
	}
}
