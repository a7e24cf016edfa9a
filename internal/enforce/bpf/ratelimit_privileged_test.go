//go:build linux

package bpf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

func rateOf(t *testing.T, s string) policy.Rate {
	t.Helper()
	r, err := policy.ParseRate(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rateLimits builds Ruleset.RateLimits sorted by uid.
func rateLimits(rates ...policy.UIDRate) []policy.UIDRate {
	slices.SortFunc(rates, func(a, b policy.UIDRate) int { return int(int64(a.UID) - int64(b.UID)) })
	return rates
}

// repeat is n expectations for addrs cycled: the first pass of them
// connect, the rest get errno.
func repeat(addrs []string, n, pass int, errno string) ([]string, []expect) {
	var as []string
	var want []expect
	for i := range n {
		a := addrs[i%len(addrs)]
		as = append(as, a)
		if i < pass {
			want = append(want, expect{addr: a, banner: unmapHost(a)})
		} else {
			want = append(want, expect{addr: a, errno: errno})
		}
	}
	return as, want
}

func (w *world) allowedCounts() map[uint32]uint64 {
	w.t.Helper()
	got, err := w.b.AllowedConnections(context.Background())
	if err != nil {
		w.t.Fatalf("AllowedConnections: %v", err)
	}
	return got
}

// TestPrivilegedBPFRateLimit: with 5/m the first five connections of a uid
// (any family, any restricted port: one bucket) pass and the sixth is
// refused like a blocked one and reported rate-limited; an exception's
// connections share the uid's bucket; a uid without a rate (root) is not
// limited; what passed is counted per uid. Under redirect and log the
// over-limit connection is treated as a blocked one is.
func TestPrivilegedBPFRateLimit(t *testing.T) {
	w := newWorld(t)
	events := w.collectEvents()
	rs := w.ruleset(policy.ModeReject)
	rs.Exceptions = []policy.ExceptionRule{{UID: w.user.UID, Dst: netip.MustParsePrefix("192.0.2.0/24"), Port: 587}}
	rs.RateLimits = rateLimits(
		policy.UIDRate{UID: w.allowed.UID, Rate: rateOf(t, "5/m")},
		policy.UIDRate{UID: w.user.UID, Rate: rateOf(t, "2/m")},
	)
	w.apply(rs)

	mixed := []string{hostPort(serverV4, 25), hostPort(serverV6, 465), hostPort("::ffff:"+serverV4, 587)}
	addrs, want := repeat(mixed, 6, 5, w.refusal)
	w.check("allowed user at 5/m", w.connect(helperConnect, &w.allowed, addrs...), want)
	limited := events.waitFor(t, 1, func(e Event) bool { return e.UID == w.allowed.UID })
	if got := limited[0]; got.Action != enforce.ActionRateLimited || got.Dst != netip.MustParseAddr(serverV4) || got.DstPort != 587 || !got.Mapped {
		t.Errorf("event of the sixth connect: %+v, want rate-limited to mapped %s port 587", got, serverV4)
	}

	rootAddrs, rootWant := repeat(mixed, 8, 8, "")
	w.check("root, no rate", w.connect(helperConnect, nil, rootAddrs...), rootWant)

	// The exception (587) is limited by the uid's 2/m; port 25 is not
	// excepted: blocked, and it takes nothing from the bucket.
	exc := hostPort(serverV4, 587)
	w.check("exception at 2/m", w.connect(helperConnect, &w.user, hostPort(serverV4, 25), exc, exc, exc),
		[]expect{{addr: hostPort(serverV4, 25), errno: w.refusal}, {addr: exc, banner: exc}, {addr: exc, banner: exc}, {addr: exc, errno: w.refusal}})
	userEvents := events.waitFor(t, 2, func(e Event) bool { return e.UID == w.user.UID })
	var actions []string
	for _, e := range userEvents {
		actions = append(actions, fmt.Sprintf("%s %d", e.Action, e.DstPort))
	}
	if diff := cmp.Diff([]string{"blocked 25", "rate-limited 587"}, actions); diff != "" {
		t.Errorf("the user's events (-want +got):\n%s", diff)
	}

	if diff := cmp.Diff(map[uint32]uint64{0: 8, w.allowed.UID: 5, w.user.UID: 2}, w.allowedCounts()); diff != "" {
		t.Errorf("AllowedConnections (-want +got):\n%s", diff)
	}

	// The same rates under another mode: the bucket stays empty, and the
	// over-limit connect is redirected, or logged and let through.
	rs.Mode = policy.ModeRedirect
	w.apply(rs)
	w.check("over the limit under redirect", w.connect(helperConnect, &w.allowed, hostPort(serverV4, 25)),
		[]expect{{addr: hostPort(serverV4, 25), banner: "127.0.0.1:25"}})
	rs.Mode = policy.ModeLog
	w.apply(rs)
	w.check("over the limit under log", w.connect(helperConnect, &w.allowed, hostPort(serverV6, 25)),
		[]expect{{addr: hostPort(serverV6, 25), banner: hostPort(serverV6, 25)}})
	got := events.waitFor(t, 3, func(e Event) bool { return e.UID == w.allowed.UID })
	for _, e := range got[1:] {
		if e.Action != enforce.ActionRateLimited {
			t.Errorf("event under redirect or log: %s to port %d, want rate-limited", e.Action, e.DstPort)
		}
	}
	// Neither counts as allowed.
	if n := w.allowedCounts()[w.allowed.UID]; n != 5 {
		t.Errorf("allowed connections of the limited user after redirect and log: %d, want still 5", n)
	}
}

// TestPrivilegedBPFRateLimitRefillAndUpdate: a rate change is a map update
// (same programs) that takes effect at once and starts the bucket afresh;
// after a period the bucket is full again (count connections, not more);
// removing the rate removes the limit and the bucket.
func TestPrivilegedBPFRateLimitRefillAndUpdate(t *testing.T) {
	w := newWorld(t)
	rs := w.ruleset(policy.ModeReject)
	rs.RateLimits = rateLimits(policy.UIDRate{UID: w.allowed.UID, Rate: rateOf(t, "5/m")})
	w.apply(rs)
	progs, err := CgroupPrograms(w.cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	dst := []string{hostPort(serverV4, 25)}
	addrs, want := repeat(dst, 6, 5, w.refusal)
	w.check("5/m", w.connect(helperConnect, &w.allowed, addrs...), want)
	w.check("5/m, still empty", w.connect(helperConnect, &w.allowed, dst...), []expect{{addr: dst[0], errno: w.refusal}})

	// 2 per 2 s: an interval of a second between the first two connects
	// and the third, which must be refused, leaves room for a slow machine.
	rs.RateLimits = rateLimits(policy.UIDRate{UID: w.allowed.UID, Rate: policy.Rate{Count: 2, Period: 2 * time.Second}})
	w.apply(rs)
	if now, err := CgroupPrograms(w.cg.Path); err != nil || !cmp.Equal(progs, now) {
		t.Fatalf("a rate change reloaded the programs: %v before, %v after (%v)", progs, now, err)
	}
	addrs, want = repeat(dst, 3, 2, w.refusal)
	w.check("2 per 2s, a fresh bucket", w.connect(helperConnect, &w.allowed, addrs...), want)
	// Once the bucket's TAT has passed it is full again: 2, not more.
	w.waitBucketFull(w.allowed.UID, 2*time.Second)
	w.check("2 per 2s after a period", w.connect(helperConnect, &w.allowed, addrs...), want)

	rs.RateLimits = nil
	w.apply(rs) // Verify would name a bucket left behind
	addrs, want = repeat(dst, 8, 8, "")
	w.check("rate removed", w.connect(helperConnect, &w.allowed, addrs...), want)
	if n := w.allowedCounts()[w.allowed.UID]; n != 5+2+2+8 {
		t.Errorf("allowed connections: %d, want %d", n, 5+2+2+8)
	}

	// Remove (disable) unpins the limits, the buckets and the counters.
	if err := w.b.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{mapRates, mapBuckets, mapAllowed} {
		if _, err := os.Lstat(filepath.Join(w.b.PinDir(), name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after Remove: %v, want it gone", name, err)
		}
	}
	if _, err := w.b.AllowedConnections(context.Background()); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("AllowedConnections after Remove: %v, want ErrNotInstalled", err)
	}
}

// waitBucketFull waits until uid's bucket is full: its TAT (the time the
// programs admitted connections up to, CLOCK_BOOTTIME) has passed. Refilling
// is time passing, with no event to await; the wait is bounded by period.
func (w *world) waitBucketFull(uid uint32, period time.Duration) {
	w.t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(w.b.PinDir(), mapBuckets), nil)
	if err != nil {
		w.t.Fatal(err)
	}
	defer m.Close()
	var v []byte
	if err := m.Lookup(u32Key(uid), &v); err != nil {
		w.t.Fatalf("bucket of uid %d: %v", uid, err)
	}
	tat := time.Duration(nativeEndian.Uint64(v[bucketOffTAT:]))
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		w.t.Fatal(err)
	}
	left := tat - time.Duration(ts.Nano())
	if left > period {
		w.t.Fatalf("bucket of uid %d is full in %v, more than its period %v", uid, left, period)
	}
	time.Sleep(left + 10*time.Millisecond)
}

// TestPrivilegedBPFRateLimitConcurrent: connects racing on every CPU are
// admitted exactly up to the limit, because the bucket's check and update
// hold its bpf_spin_lock. Two processes per CPU make non-blocking connects
// back to back (nothing answers the destination, so each costs only the
// hook and a SYN) for as long as the limit admits them.
func TestPrivilegedBPFRateLimitConcurrent(t *testing.T) {
	w := newWorld(t)
	rs := w.ruleset(policy.ModeReject)
	const limit, each = 20000, 15000
	procs := 2 * runtime.NumCPU()
	rs.RateLimits = rateLimits(policy.UIDRate{UID: w.allowed.UID, Rate: policy.Rate{Count: limit, Period: 24 * time.Hour}})
	w.apply(rs)
	var waits []func() helperResult
	for range procs {
		waits = append(waits, startIn(t, w.cg, w.client, helperRequest{Mode: helperBurst, UID: w.allowed.UID, GID: w.allowed.GID,
			Addrs: []string{hostPort(silentV4, 25)}, Burst: each}))
	}
	total := map[string]int{}
	for _, wait := range waits {
		for k, n := range wait().Outcomes {
			total[k] += n
		}
	}
	want := map[string]int{"EINPROGRESS": limit, w.refusal: procs*each - limit}
	if diff := cmp.Diff(want, total); diff != "" {
		t.Errorf("%d connects from %d processes at once (-want +got):\n%s", procs*each, procs, diff)
	}
	if n := w.allowedCounts()[w.allowed.UID]; n != limit {
		t.Errorf("allowed connections: %d, want %d", n, limit)
	}
}

// silentV4 is on the client's link but nobody has it: a connect there
// is let through or refused by the hook, then waits for ARP in vain.
const silentV4 = "192.0.2.99"

// burst makes n non-blocking connects to addr, closing each at once, and
// counts their outcomes by errno ("EINPROGRESS" when let through).
func burst(addr string, n int) map[string]int {
	out := map[string]int{}
	sa := sockaddrOf(addr)
	for range n {
		fd, r := newSocket(addr)
		if fd < 0 {
			out["socket: "+r.Err]++
			continue
		}
		err := unix.Connect(fd, sa)
		unix.Close(fd)
		if err == nil {
			out["connected"]++
		} else {
			out[errnoName(err)]++
		}
	}
	return out
}

// TestPrivilegedBPFRateLimitDrift: a changed or extra limit and a bucket
// left without a limit are drift Verify names; Apply repairs them.
func TestPrivilegedBPFRateLimitDrift(t *testing.T) {
	w := newWorld(t)
	rs := w.ruleset(policy.ModeReject)
	rs.RateLimits = rateLimits(policy.UIDRate{UID: w.allowed.UID, Rate: rateOf(t, "5/m")})
	w.apply(rs)
	open := func(name string) *ebpf.Map {
		m, err := ebpf.LoadPinnedMap(filepath.Join(w.b.PinDir(), name), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	rates, buckets := open(mapRates), open(mapBuckets)
	fast, _ := rateValue(rateOf(t, "100/s"))
	slow, _ := rateValue(rateOf(t, "1/d"))
	for _, kv := range []struct {
		m    *ebpf.Map
		k, v []byte
	}{
		{rates, u32Key(w.allowed.UID), fast},
		{rates, u32Key(w.user.UID), slow},
		{buckets, u32Key(4242), make([]byte, bucketValueSize)},
	} {
		if err := kv.m.Update(kv.k, kv.v, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
	}
	if err := open(mapAllowed).Unpin(); err != nil {
		t.Fatal(err)
	}
	d, err := w.b.Verify(context.Background(), rs)
	if err != nil {
		t.Fatal(err)
	}
	wantProblems := []string{
		"map sg_allowed_cnt is not pinned",
		fmt.Sprintf("sg_rates holds uid %d at 100/s, want 5/m", w.allowed.UID),
		fmt.Sprintf("sg_rates has unexpected uid %d at 1/d", w.user.UID),
		"sg_buckets has a bucket of uid 4242, which has no rate limit",
	}
	if diff := cmp.Diff(wantProblems, d.Problems); diff != "" {
		t.Errorf("Verify (-want +got):\n%s", diff)
	}
	w.apply(rs)
	addrs, want := repeat([]string{hostPort(serverV4, 25)}, 6, 5, w.refusal)
	w.check("repaired 5/m", w.connect(helperConnect, &w.allowed, addrs...), want)
}
