//go:build linux

package bpf

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// bigRuleset is the test policy with n allowed uids from 100000 on, plus
// extra.
func bigRuleset(n int, extra ...uint32) policy.Ruleset {
	uids := make([]uint32, 0, n+len(extra))
	for i := range n {
		uids = append(uids, uint32(100000+i))
	}
	uids = append(uids, extra...)
	return policy.Ruleset{Mode: policy.ModeReject, Ports: []uint16{25, 465, 587}, AllowLocal: true, UIDs: uids}
}

// newSyncBackend is a backend on a child cgroup and a private bpf file
// system, with fixed local addresses: no network namespaces, as nothing
// connects.
func newSyncBackend(tb testing.TB) *Backend {
	tb.Helper()
	testutil.Privileged(tb)
	cg := testutil.NewCgroup(tb)
	b := New(Config{
		Logger:     slog.New(slog.DiscardHandler),
		CgroupPath: cg.Path,
		BPFFS:      testutil.NewBPFFS(tb),
		LocalAddrs: func() ([]netip.Prefix, error) {
			return []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("2001:db8::1/128")}, nil
		},
	})
	tb.Cleanup(func() {
		if err := b.Remove(context.Background()); err != nil {
			tb.Errorf("Remove: %v", err)
		}
	})
	return b
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPrivilegedBPFApplyAddOneUID measures what the engine does when
// one user is allowed while 10,000 are: Apply with one more uid, then
// Verify. Each op starts from the 10,000 (restored untimed). cpu-ns/op is
// the process's user+system time (the kernel's map work is system time).
func BenchmarkPrivilegedBPFApplyAddOneUID(b *testing.B) {
	bk := newSyncBackend(b)
	ctx := context.Background()
	base, more := bigRuleset(10000), bigRuleset(10000, 99999)
	if err := bk.Apply(ctx, base); err != nil {
		b.Fatalf("Apply: %v", err)
	}
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		start := cpuTime()
		if err := bk.Apply(ctx, more); err != nil {
			b.Fatalf("Apply: %v", err)
		}
		d, err := bk.Verify(ctx, more)
		if err != nil {
			b.Fatalf("Verify: %v", err)
		}
		if !d.InSync() {
			b.Fatalf("Verify after Apply: %s", d)
		}
		cpu += cpuTime() - start
		b.StopTimer()
		if err := bk.Apply(ctx, base); err != nil {
			b.Fatalf("Apply: %v", err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// mapOps counts what the sync code asks of the maps, per map: calls (each a
// bpf() call) and element writes.
type mapOps struct {
	mu     sync.Mutex
	calls  map[string]int
	writes map[string]int
}

func countOps(b *Backend) *mapOps {
	ops := &mapOps{calls: map[string]int{}, writes: map[string]int{}}
	b.wrapMap = func(name string, m kmap) kmap { return &countingMap{kmap: m, name: name, ops: ops} }
	return ops
}

func (o *mapOps) add(name string, calls, writes int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls[name] += calls
	if writes > 0 {
		o.writes[name] += writes
	}
}

// reset returns the counts so far and starts again.
func (o *mapOps) reset() (calls, writes map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	calls, writes = o.calls, o.writes
	o.calls, o.writes = map[string]int{}, map[string]int{}
	return calls, writes
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

type countingMap struct {
	kmap
	name string
	ops  *mapOps
}

func (c *countingMap) Lookup(key, valueOut any) error {
	c.ops.add(c.name, 1, 0)
	return c.kmap.Lookup(key, valueOut)
}

func (c *countingMap) NextKeyBytes(key any) ([]byte, error) {
	c.ops.add(c.name, 1, 0)
	return c.kmap.NextKeyBytes(key)
}

func (c *countingMap) BatchLookup(cursor *ebpf.MapBatchCursor, keysOut, valuesOut any, opts *ebpf.BatchOptions) (int, error) {
	c.ops.add(c.name, 1, 0)
	return c.kmap.BatchLookup(cursor, keysOut, valuesOut, opts)
}

func (c *countingMap) Update(key, value any, flags ebpf.MapUpdateFlags) error {
	c.ops.add(c.name, 1, 1)
	return c.kmap.Update(key, value, flags)
}

func (c *countingMap) Delete(key any) error {
	c.ops.add(c.name, 1, 1)
	return c.kmap.Delete(key)
}

// TestPrivilegedBPFApplyAddOneUIDIsBounded: allowing one more user while
// 10,000 are allowed writes that one uid and nothing else, and Apply plus
// Verify take a number of map calls bounded by the maps' capacity over the
// batch size, not by the uids: element-at-a-time reads made it 40,000
// calls (434-793 ms per added user in the bench). Removing it again
// deletes just it.
func TestPrivilegedBPFApplyAddOneUIDIsBounded(t *testing.T) {
	bk := newSyncBackend(t)
	ctx := context.Background()
	base, more := bigRuleset(10000), bigRuleset(10000, 99999)
	if err := bk.Apply(ctx, base); err != nil {
		t.Fatalf("Apply(10,000 uids): %v", err)
	}
	ops := countOps(bk)
	// Per hash map read: capacity/batchSize+1 calls at most (sg_uids:
	// 33); every other map holds a handful of elements.
	const maxCalls = 80
	for _, step := range []struct {
		name string
		rs   policy.Ruleset
		want map[string]int // element writes per map
	}{
		{"add uid 99999", more, map[string]int{mapUIDs: 1}},
		{"again, nothing to do", more, map[string]int{}},
		{"remove uid 99999", base, map[string]int{mapUIDs: 1}},
	} {
		if err := bk.Apply(ctx, step.rs); err != nil {
			t.Fatalf("%s: Apply: %v", step.name, err)
		}
		calls, writes := ops.reset()
		t.Logf("%s: Apply's map calls: %v", step.name, calls)
		if diff := cmp.Diff(step.want, writes, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: Apply's element writes per map (-want +got):\n%s", step.name, diff)
		}
		if n := total(calls); n > maxCalls {
			t.Errorf("%s: Apply made %d map calls, want at most %d: %v", step.name, n, maxCalls, calls)
		}
		d, err := bk.Verify(ctx, step.rs)
		if err != nil {
			t.Fatalf("%s: Verify: %v", step.name, err)
		}
		if !d.InSync() {
			t.Fatalf("%s: Verify after Apply: %s", step.name, d)
		}
		calls, writes = ops.reset()
		if n := total(writes); n != 0 {
			t.Errorf("%s: Verify wrote %d elements: %v", step.name, n, writes)
		}
		if n := total(calls); n > maxCalls {
			t.Errorf("%s: Verify made %d map calls, want at most %d: %v", step.name, n, maxCalls, calls)
		}
	}
}
