package daemon

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

const testPasswd = `root:x:0:0:root:/root:/bin/bash
alice:x:1001:1001::/home/alice:/bin/bash
bob:x:1002:1002::/home/bob:/bin/bash
`

const testGroup = `root:x:0:
alice:x:1001:
bob:x:1002:
mailers:x:2000:alice
`

type fixture struct {
	cfg     engine.Config
	eng     *engine.Engine
	backend *fake.Backend
	kernel  *Kernel // holds backend, as serve wires it
	dir     string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "passwd"), testPasswd)
	write(t, filepath.Join(dir, "group"), testGroup)
	b := fake.New("fake")
	k := NewKernel([]enforce.Backend{b})
	cfg := engine.Config{
		StateDir:   filepath.Join(dir, "state"),
		PasswdPath: filepath.Join(dir, "passwd"),
		GroupPath:  filepath.Join(dir, "group"),
		MTA:        mta.Config{Root: filepath.Join(dir, "root")},
		Backends:   k.Backends(),
	}
	eng, err := engine.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return &fixture{cfg: cfg, eng: eng, backend: b, kernel: k, dir: dir}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	// Write and rename, as useradd does, so the inode changes.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

var admin = engine.Actor{Name: "root", Source: "cli"}

// start runs a daemon until the test ends and returns it.
func (f *fixture) start(t *testing.T, cfg Config) *Daemon {
	t.Helper()
	d, _ := f.run(t, cfg)
	return d
}

// run is start that also returns stop, which ends the daemon and waits for
// it (a restart); the test's end stops it otherwise. cfg.Engine defaults to
// the fixture's.
func (f *fixture) run(t *testing.T, cfg Config) (d *Daemon, stop func()) {
	t.Helper()
	if cfg.Engine == nil {
		cfg.Engine = f.eng
	}
	if cfg.Kernel == nil {
		cfg.Kernel = f.kernel
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 20 * time.Millisecond
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run() = %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("daemon did not stop within 10s of cancellation")
			}
		})
	}
	t.Cleanup(stop)
	waitFor(t, "daemon to attach to the backend", f.backend.Attached)
	return d, stop
}

func (f *fixture) enabled(t *testing.T) bool {
	p, _, err := f.eng.Store().Policy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p.Enabled
}

// settle kicks d and waits until a reconcile pass that started after the kick
// has finished: the pass that would have acted on whatever the test did
// before, so a negative assertion after it means something.
func settle(t *testing.T, d *Daemon) {
	t.Helper()
	d.Kick()
	target := d.kicks.Load()
	waitFor(t, "a reconcile pass after the kick", func() bool { return d.passed.Load() >= target })
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDaemonConvergesAtStart(t *testing.T) {
	f := newFixture(t)
	if _, err := f.eng.Enable(context.Background(), admin, "fake"); err != nil {
		t.Fatal(err)
	}
	f.backend.Tamper(nil) // e.g. a reboot: the kernel starts empty
	f.start(t, Config{})
	waitFor(t, "rules installed at start", func() bool { return f.backend.Installed() != nil })
}

func TestDaemonRemovesLeftoversOfADisabledPolicyAtStart(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.eng.Enable(ctx, admin, "fake"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.eng.Disable(ctx, admin); err != nil {
		t.Fatal(err)
	}
	f.backend.Apply(ctx, policy.Ruleset{}) // left over by a crash
	f.start(t, Config{})
	waitFor(t, "leftover rules removed", func() bool { return f.backend.Installed() == nil })
}

// A database that never held a policy while smtpguard's rules are in the
// kernel is a deleted or emptied one, not a disabled policy: the daemon keeps
// the rules and says what to do on /healthz.
func TestDaemonKeepsRulesWhenTheDatabaseHoldsNoPolicy(t *testing.T) {
	f := newFixture(t)
	f.backend.Apply(context.Background(), policy.Ruleset{Mode: policy.ModeReject, Ports: []uint16{25}, UIDs: []uint32{0}})
	d := f.start(t, Config{})
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "smtpguard disable") || !strings.Contains(rec.Body.String(), "from a backup") {
		t.Errorf("/healthz = %d %s; want 503 naming the fix (restore from a backup, or smtpguard disable)", rec.Code, rec.Body.String())
	}
	if f.backend.Installed() == nil || slices.Contains(f.backend.Calls(), "remove") {
		t.Errorf("the daemon removed the rules of a database that lost its policy (calls %v)", f.backend.Calls())
	}
	// An explicit disable is what lifts them.
	if _, err := f.eng.Disable(context.Background(), admin); err != nil {
		t.Fatal(err)
	}
	if f.backend.Installed() != nil {
		t.Error("disable left the rules in the kernel")
	}
}

func TestDaemonRepairsDriftAndCountsIt(t *testing.T) {
	f := newFixture(t)
	if _, err := f.eng.Enable(context.Background(), admin, "fake"); err != nil {
		t.Fatal(err)
	}
	d := f.start(t, Config{})
	want := *f.backend.Installed()
	f.backend.Tamper(nil) // nft flush ruleset
	waitFor(t, "rules restored", func() bool { return f.backend.Installed() != nil })
	if got := *f.backend.Installed(); !rulesetEqual(got, want) {
		t.Errorf("restored ruleset = %+v, want %+v", got, want)
	}
	waitFor(t, "repair counted", func() bool { return promtest.ToFloat64(d.metrics.driftRepairs) == 1 })
	// An edited ruleset (a uid slipped in) is repaired too.
	tampered := want
	tampered.UIDs = append(slices.Clone(want.UIDs), 1002)
	f.backend.Tamper(&tampered)
	waitFor(t, "extra uid removed", func() bool { return slices.Equal(f.backend.Installed().UIDs, want.UIDs) })
	waitFor(t, "second repair counted", func() bool { return promtest.ToFloat64(d.metrics.driftRepairs) == 2 })
}

func TestPolicyChangesFromOtherProcessesAreNotDrift(t *testing.T) {
	f := newFixture(t)
	if _, err := f.eng.Enable(context.Background(), admin, "fake"); err != nil {
		t.Fatal(err)
	}
	d := f.start(t, Config{})
	// Another process (the CLI) with its own engine on the same state dir.
	cli, err := engine.Open(context.Background(), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, user := range []string{"alice", "bob"} {
		if _, err := cli.Allow(context.Background(), admin, policy.KindUser, user); err != nil {
			t.Fatal(err)
		}
	}
	f.backend.Tamper(f.backend.Installed()) // the CLI's own apply notifies watchers too
	settle(t, d)
	if got := f.backend.Installed().UIDs; !slices.Equal(got, []uint32{0, 1001, 1002}) {
		t.Errorf("kernel uids = %v: the daemon reverted or lost a CLI change", got)
	}
	if n := promtest.ToFloat64(d.metrics.driftRepairs); n != 0 {
		t.Errorf("drift repairs = %v after legitimate policy changes, want 0", n)
	}
}

func TestAccountChangesAreAppliedWithoutRestart(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.eng.Enable(ctx, admin, "fake")
	f.eng.Allow(ctx, admin, policy.KindGroup, "mailers")
	d := f.start(t, Config{})
	if got := f.backend.Installed().UIDs; !slices.Equal(got, []uint32{0, 1001}) {
		t.Fatalf("uids = %v, want root and alice", got)
	}
	// usermod -aG mailers bob
	write(t, f.cfg.GroupPath, strings.Replace(testGroup, "mailers:x:2000:alice", "mailers:x:2000:alice,bob", 1))
	waitFor(t, "bob allowed after joining mailers", func() bool { return slices.Equal(f.backend.Installed().UIDs, []uint32{0, 1001, 1002}) })
	// userdel alice
	write(t, f.cfg.PasswdPath, strings.Replace(testPasswd, "alice:x:1001:1001::/home/alice:/bin/bash\n", "", 1))
	waitFor(t, "alice gone after deletion", func() bool { return slices.Equal(f.backend.Installed().UIDs, []uint32{0, 1002}) })
	if n := promtest.ToFloat64(d.metrics.driftRepairs); n != 0 {
		t.Errorf("account changes counted as %v drift repairs, want 0", n)
	}
}

func TestStoppingLeavesEnforcementInPlace(t *testing.T) {
	f := newFixture(t)
	f.eng.Enable(context.Background(), admin, "fake")
	d, err := New(Config{Engine: f.eng, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	waitFor(t, "the daemon to converge and attach", f.backend.Attached)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.backend.Installed() == nil || slices.Contains(f.backend.Calls(), "remove") {
		t.Error("stopping the daemon removed the rules: it must fail closed")
	}
}

func TestBlockedAttemptsAreRecordedWithTheUser(t *testing.T) {
	f := newFixture(t)
	f.eng.Enable(context.Background(), admin, "fake")
	d := f.start(t, Config{})
	now := time.Now()
	dst := netip.MustParseAddr("192.0.2.2")
	for range 3 {
		f.backend.Emit(enforce.Event{Time: now, UID: 1002, HasUID: true, Family: 4, Dst: dst, DstPort: 25, Action: enforce.ActionBlocked})
	}
	f.backend.Emit(enforce.Event{Time: now, UID: 1002, HasUID: true, Family: 6, Dst: netip.MustParseAddr("2001:db8::2"), DstPort: 587, Action: enforce.ActionBlocked})
	f.backend.Emit(enforce.Event{Time: now, UID: 1001, HasUID: true, Family: 4, Dst: netip.MustParseAddr("::ffff:192.0.2.2"), DstPort: 25, Action: enforce.ActionLogged})
	var evs []store.Event
	waitFor(t, "events stored", func() bool {
		evs, _ = f.eng.Store().Events(context.Background(), store.EventFilter{})
		return len(evs) == 3
	})
	got := map[string]int64{}
	for _, e := range evs {
		got[e.User+" "+e.Address+" "+e.Action] += e.Count
	}
	want := map[string]int64{"bob 192.0.2.2 blocked": 3, "bob 2001:db8::2 blocked": 1, "alice 192.0.2.2 logged": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("recorded %s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if n := promtest.ToFloat64(d.metrics.attempts.WithLabelValues("bob", "blocked")); n != 4 {
		t.Errorf("blocked attempts metric for bob = %v, want 4", n)
	}
	// The metrics endpoint serves them.
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `smtpguard_blocked_attempts_total{action="blocked",user="bob"} 4`) {
		t.Errorf("/metrics lacks bob's counter:\n%s", rec.Body.String())
	}
}

func TestRecorderIsBoundedAndCountsDrops(t *testing.T) {
	f := newFixture(t)
	m := newMetrics()
	r := &recorder{queue: make(chan enforce.Event, 2), store: f.eng, metrics: m, log: slog.New(slog.DiscardHandler), maxAggs: 2, maxLines: 1}
	ev := func(port uint16) enforce.Event {
		return enforce.Event{Time: time.Now(), UID: 1001, HasUID: true, Family: 4, Dst: netip.MustParseAddr("192.0.2.2"), DstPort: port, Action: enforce.ActionBlocked}
	}
	// Nobody drains the queue: 5 events into a queue of 2.
	for range 5 {
		r.sink(ev(25))
	}
	if n := promtest.ToFloat64(m.dropped.WithLabelValues("queue_full")); n != 3 {
		t.Errorf("queue_full drops = %v, want 3", n)
	}
	r.sink(enforce.Event{Action: enforce.ActionLost})
	if n := promtest.ToFloat64(m.dropped.WithLabelValues("kernel")); n != 1 {
		t.Errorf("kernel drops = %v, want 1", n)
	}
	// A ring buffer's drops (bpf) are counted under their own reason.
	r.sink(enforce.Event{Action: enforce.ActionLost, LostReason: enforce.LostRingFull})
	r.sink(enforce.Event{Action: enforce.ActionLost, LostReason: enforce.LostRingFull})
	if n := promtest.ToFloat64(m.dropped.WithLabelValues("ring_full")); n != 2 {
		t.Errorf("ring_full drops = %v, want 2", n)
	}
	if n := promtest.ToFloat64(m.dropped.WithLabelValues("kernel")); n != 1 {
		t.Errorf("kernel drops after ring_full ones = %v, want still 1", n)
	}
	// At most two distinct aggregates between flushes.
	aggs := map[aggKey]*store.Event{}
	for _, port := range []uint16{25, 465, 587, 25} {
		r.add(aggs, ev(port))
	}
	if len(aggs) != 2 || promtest.ToFloat64(m.dropped.WithLabelValues("aggregate_limit")) != 1 {
		t.Errorf("aggregates = %d, aggregate_limit drops = %v; want 2 and 1", len(aggs), promtest.ToFloat64(m.dropped.WithLabelValues("aggregate_limit")))
	}
	r.flush(context.Background(), aggs)
	evs, _ := f.eng.Store().Events(context.Background(), store.EventFilter{})
	var total int64
	for _, e := range evs {
		total += e.Count
	}
	if total != 3 {
		t.Errorf("stored attempts = %d, want 3 (2 on port 25, 1 on 465)", total)
	}
}

func TestUserLabelsAreBounded(t *testing.T) {
	m := newMetrics()
	for i := range maxUserLabels + 50 {
		m.userLabel("user" + string(rune('a'+i%26)) + string(rune('a'+i/26)))
	}
	if got := m.userLabel("one-too-many"); got != otherUser {
		t.Errorf("userLabel past the cap = %q, want %q", got, otherUser)
	}
	if got := m.userLabel("useraa"); got != "useraa" {
		t.Errorf("userLabel of a known user = %q", got)
	}
}

func TestOldEventsArePruned(t *testing.T) {
	f := newFixture(t)
	old := time.Now().Add(-48 * time.Hour)
	f.eng.RecordEvents(context.Background(), []store.Event{
		{UID: 1001, Family: 4, Address: "192.0.2.2", Port: 25, Action: "blocked", Count: 1, FirstSeen: old, LastSeen: old},
		{UID: 1001, Family: 4, Address: "192.0.2.2", Port: 25, Action: "blocked", Count: 1, FirstSeen: time.Now(), LastSeen: time.Now()},
	})
	f.start(t, Config{Retention: 24 * time.Hour})
	waitFor(t, "old event pruned", func() bool {
		evs, _ := f.eng.Store().Events(context.Background(), store.EventFilter{})
		return len(evs) == 1
	})
}
