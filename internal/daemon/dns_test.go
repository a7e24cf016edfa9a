package daemon

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

func TestNextLookup(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	floor, ceiling := 30*time.Second, time.Hour
	tests := []struct {
		name  string
		entry store.DNSEntry
		known bool
		want  time.Time
	}{
		{"never looked up", store.DNSEntry{}, false, time.Time{}},
		{"honours the TTL", store.DNSEntry{CheckedAt: at, TTL: 5 * time.Minute}, true, at.Add(5 * time.Minute)},
		{"a tiny TTL is raised to the floor", store.DNSEntry{CheckedAt: at, TTL: time.Second}, true, at.Add(floor)},
		{"hosts-file answers (no TTL) use the floor", store.DNSEntry{CheckedAt: at}, true, at.Add(floor)},
		{"a week-long TTL is capped", store.DNSEntry{CheckedAt: at, TTL: 7 * 24 * time.Hour}, true, at.Add(ceiling)},
		{"a failure retries after the floor", store.DNSEntry{CheckedAt: at, TTL: time.Hour, Error: "timeout"}, true, at.Add(floor)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextLookup(tt.entry, tt.known, floor, ceiling); !got.Equal(tt.want) {
				t.Errorf("nextLookup() = %v, want %v", got, tt.want)
			}
		})
	}
}

// fakeResolver answers from a table the test changes.
type fakeResolver struct {
	mu    sync.Mutex
	addrs map[string][]netip.Addr
	fail  bool
}

func (r *fakeResolver) set(host string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	r.addrs[host] = out
}

func (r *fakeResolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return nil, 0, errors.New("server failure")
	}
	a, ok := r.addrs[host]
	if !ok {
		return nil, 0, errors.New("no addresses")
	}
	return a, time.Second, nil
}

func exceptionDsts(rs *policy.Ruleset) []string {
	var out []string
	for _, e := range rs.Exceptions {
		out = append(out, e.Dst.String())
	}
	return out
}

func TestExceptionHostsFollowDNS(t *testing.T) {
	f := newFixture(t)
	res := &fakeResolver{addrs: map[string][]netip.Addr{}}
	f.cfg.Resolver = res
	eng, err := engine.Open(context.Background(), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	f.eng = eng
	ctx := context.Background()
	eng.Enable(ctx, admin, "fake")
	// Not resolvable yet: accepted, and enforced once it resolves.
	if _, err := eng.AllowException(ctx, admin, policy.KindUser, "alice", "relay.example.net", "587"); err != nil {
		t.Fatal(err)
	}
	if got := f.backend.Installed().Exceptions; len(got) != 0 {
		t.Fatalf("exceptions for an unresolved name = %v, want none yet", got)
	}
	st, _ := eng.Status(ctx)
	if len(st.Exceptions) != 1 || !st.Exceptions[0].Unresolved {
		t.Errorf("status exceptions = %+v, want one unresolved", st.Exceptions)
	}
	res.set("relay.example.net", "192.0.2.2")
	f.start(t, Config{DNSMinTTL: 10 * time.Millisecond})
	waitFor(t, "the name to resolve and be enforced", func() bool {
		return strings.Join(exceptionDsts(f.backend.Installed()), ",") == "192.0.2.2/32"
	})
	res.set("relay.example.net", "192.0.2.3", "2001:db8::3")
	waitFor(t, "the changed answer to be enforced", func() bool {
		return strings.Join(exceptionDsts(f.backend.Installed()), ",") == "192.0.2.3/32,2001:db8::3/128"
	})
	res.mu.Lock()
	res.fail = true
	res.mu.Unlock()
	waitFor(t, "a failed lookup to be recorded", func() bool {
		st, _ = eng.Status(ctx)
		return st.Exceptions[0].LookupError != ""
	})
	if got := strings.Join(exceptionDsts(f.backend.Installed()), ","); got != "192.0.2.3/32,2001:db8::3/128" {
		t.Errorf("while DNS fails the exception became %q; the last good answer must be kept", got)
	}
	if len(st.Exceptions[0].Addresses) != 2 {
		t.Errorf("status during DNS failure = %+v, want the kept addresses", st.Exceptions[0])
	}
}

func TestNotifyCommandIsRunAndRateLimited(t *testing.T) {
	f := newFixture(t)
	f.eng.Enable(context.Background(), admin, "fake")
	out := filepath.Join(f.dir, "notified")
	script := filepath.Join(f.dir, "notify.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n{ echo \"$@\"; cat; echo; } >> "+out+"\n"), 0o755)
	d := f.start(t, Config{NotifyCommand: script, NotifyInterval: time.Hour})
	ev := enforce.Event{Time: time.Now(), UID: 1002, HasUID: true, Family: 4, Dst: netip.MustParseAddr("192.0.2.3"), DstPort: 587, Action: enforce.ActionBlocked}
	f.backend.Emit(ev)
	var data []byte
	waitFor(t, "the notify command to run", func() bool {
		data, _ = os.ReadFile(out)
		return strings.Contains(string(data), "}\n")
	})
	if !strings.HasPrefix(string(data), "bob 192.0.2.3:587 1\n") || !strings.Contains(string(data), `"allow_command":"smtpguard allow user bob --to 192.0.2.3 --port 587"`) {
		t.Errorf("notify command got:\n%s", data)
	}
	f.backend.Emit(ev) // within the interval: no second run
	waitFor(t, "the second attempt to reach the notifier", func() bool { return d.rec.notify.suppressed.Load() == 1 })
	if again, _ := os.ReadFile(out); strings.Count(string(again), "bob 192.0.2.3:587") != 1 {
		t.Errorf("user notified twice within the interval:\n%s", again)
	}
}
