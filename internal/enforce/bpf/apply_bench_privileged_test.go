//go:build linux

package bpf

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
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
// the process's user+system time (the kernel's map work is system time),
// apply-ns/op the wall time of Apply alone.
func BenchmarkPrivilegedBPFApplyAddOneUID(b *testing.B) {
	bk := newSyncBackend(b)
	ctx := context.Background()
	base, more := bigRuleset(10000), bigRuleset(10000, 99999)
	if err := bk.Apply(ctx, base); err != nil {
		b.Fatalf("Apply: %v", err)
	}
	var cpu, apply time.Duration
	b.ResetTimer()
	for range b.N {
		start, t0 := cpuTime(), time.Now()
		if err := bk.Apply(ctx, more); err != nil {
			b.Fatalf("Apply: %v", err)
		}
		apply += time.Since(t0)
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
	b.ReportMetric(float64(apply.Nanoseconds())/float64(b.N), "apply-ns/op")
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
// batch size, not by the uids: element-at-a-time reads made it 20,000
// calls each (434-793 ms per added user in the bench). Apply reads no
// element at all when it wrote the maps last. Removing the uid again
// deletes just it.
func TestPrivilegedBPFApplyAddOneUIDIsBounded(t *testing.T) {
	bk := newSyncBackend(t)
	ctx := context.Background()
	base, more := bigRuleset(10000), bigRuleset(10000, 99999)
	if err := bk.Apply(ctx, base); err != nil {
		t.Fatalf("Apply(10,000 uids): %v", err)
	}
	ops := countOps(bk)
	// Apply diffs against what it wrote last: a few calls (sg_writer,
	// sg_buckets, the writes). Verify reads every map: per hash map
	// capacity/batchSize+1 calls at most (sg_allowed_uids: 33); every other
	// map holds a handful of elements.
	const maxApplyCalls, maxCalls = 8, 80
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
		if n := total(calls); n > maxApplyCalls {
			t.Errorf("%s: Apply made %d map calls, want at most %d: %v", step.name, n, maxApplyCalls, calls)
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

// smallRuleset allows root and uids.
func smallRuleset(uids ...uint32) policy.Ruleset {
	return policy.Ruleset{Mode: policy.ModeReject, Ports: []uint16{25, 465, 587}, AllowLocal: true, UIDs: append([]uint32{0}, uids...)}
}

// applyVerify applies rs with b and fails unless b then verifies it in
// sync.
func applyVerify(t *testing.T, label string, b *Backend, rs policy.Ruleset) {
	t.Helper()
	if err := b.Apply(context.Background(), rs); err != nil {
		t.Fatalf("%s: Apply: %v", label, err)
	}
	d, err := b.Verify(context.Background(), rs)
	if err != nil {
		t.Fatalf("%s: Verify: %v", label, err)
	}
	if !d.InSync() {
		t.Fatalf("%s: Verify after Apply: %s", label, d)
	}
}

// TestPrivilegedBPFApplyAfterAnotherWriter: a Backend that diffs against
// what it wrote last must notice that another process (the CLI while the
// daemon runs) changed the maps since: else a uid the other one allowed
// stays allowed when this one applies a policy without it.
func TestPrivilegedBPFApplyAfterAnotherWriter(t *testing.T) {
	a := newSyncBackend(t)
	other := New(a.cfg) // the same cgroup and pins, another writer
	applyVerify(t, "first writer", a, smallRuleset(1001))
	applyVerify(t, "another writer allows 1002", other, smallRuleset(1001, 1002))
	applyVerify(t, "first writer again, without 1002", a, smallRuleset(1001))
	d, err := other.Verify(context.Background(), smallRuleset(1001, 1002))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"sg_allowed_uids lacks uid 1002"}, d.Problems); diff != "" {
		t.Errorf("the other writer's view after the first wrote (-want +got):\n%s", diff)
	}
	// And back: the other one diffs against the maps, not its own last write.
	applyVerify(t, "another writer allows 1002 again", other, smallRuleset(1001, 1002))
}

// TestPrivilegedBPFApplyRepairsOutsideChange: an element changed from
// outside (bpftool) with everything still attached is found by Verify, and
// the Apply that repairs it must read the maps rather than trust what it
// wrote last.
func TestPrivilegedBPFApplyRepairsOutsideChange(t *testing.T) {
	b := newSyncBackend(t)
	rs := smallRuleset(1001)
	applyVerify(t, "apply", b, rs)
	uids, err := ebpf.LoadPinnedMap(filepath.Join(b.PinDir(), mapUIDs), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer uids.Close()
	if err := uids.Update(u32Key(1002), []byte{1}, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	if err := uids.Delete(u32Key(1001)); err != nil {
		t.Fatal(err)
	}
	d, err := b.Verify(context.Background(), rs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"sg_allowed_uids lacks uid 1001", "sg_allowed_uids has unexpected uid 1002"}
	if diff := cmp.Diff(want, d.Problems); diff != "" {
		t.Errorf("Verify after an outside change (-want +got):\n%s", diff)
	}
	applyVerify(t, "repair", b, rs)
}

// TestPrivilegedBPFApplyWithoutWriterPin: pins of a version before
// sg_writer verify in sync (it holds no policy), and the next Apply adds it
// and still changes only elements.
func TestPrivilegedBPFApplyWithoutWriterPin(t *testing.T) {
	b := newSyncBackend(t)
	applyVerify(t, "apply", b, smallRuleset(1001))
	before, err := CgroupPrograms(b.cfg.CgroupPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(b.PinDir(), mapWriter)); err != nil {
		t.Fatal(err)
	}
	// The daemon refreshes the local addresses on such pins too.
	local := []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")}
	b.cfg.LocalAddrs = func() ([]netip.Prefix, error) { return local, nil }
	if err := b.RefreshLocal(context.Background()); err != nil {
		t.Fatalf("RefreshLocal: %v", err)
	}
	d, err := b.Verify(context.Background(), smallRuleset(1001))
	if err != nil {
		t.Fatal(err)
	}
	if !d.InSync() {
		t.Errorf("Verify without the %s pin: %s", mapWriter, d)
	}
	applyVerify(t, "apply again", b, smallRuleset(1001, 1002))
	if _, err := os.Stat(filepath.Join(b.PinDir(), mapWriter)); err != nil {
		t.Errorf("Apply did not pin %s: %v", mapWriter, err)
	}
	after, err := CgroupPrograms(b.cfg.CgroupPath)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("adding the %s pin changed the cgroup's programs (-before +after):\n%s", mapWriter, diff)
	}
}

// TestPrivilegedBPFApplyAfterRefreshLocal: RefreshLocal's writes are part
// of what Apply diffs against, so an address that came and went between two
// Applies leaves the local maps.
func TestPrivilegedBPFApplyAfterRefreshLocal(t *testing.T) {
	b := newSyncBackend(t)
	var mu sync.Mutex
	local := []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}
	b.cfg.LocalAddrs = func() ([]netip.Prefix, error) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(local), nil
	}
	setLocal := func(p ...string) {
		mu.Lock()
		defer mu.Unlock()
		local = nil
		for _, s := range p {
			local = append(local, netip.MustParsePrefix(s))
		}
	}
	rs := smallRuleset(1001)
	applyVerify(t, "apply", b, rs)
	setLocal("192.0.2.1/32", "192.0.2.9/32")
	if err := b.RefreshLocal(context.Background()); err != nil {
		t.Fatalf("RefreshLocal: %v", err)
	}
	setLocal("192.0.2.1/32")
	applyVerify(t, "apply after the address went", b, rs)
}
