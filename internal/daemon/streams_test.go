package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/engine"
)

// newTwoBackendFixture is a fixture whose build has backends "one" (best)
// and "two".
func newTwoBackendFixture(t *testing.T) (f *fixture, one, two *fake.Backend) {
	t.Helper()
	f = newFixture(t)
	one, two = fake.New("one"), fake.New("two")
	k := NewKernel([]enforce.Backend{one, two})
	cfg := f.cfg
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.Backends = k.Backends()
	eng, err := engine.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return &fixture{cfg: cfg, eng: eng, backend: one, kernel: k, dir: f.dir}, one, two
}

func streams(b *fake.Backend) (watching, events int) {
	w, e, _ := b.Streams()
	return w, e
}

// Only the active backend's kernel is watched and its events read; switching
// backends moves both streams.
func TestDaemonRunsStreamsOfTheActiveBackendOnly(t *testing.T) {
	ctx := context.Background()
	f, one, two := newTwoBackendFixture(t)
	if _, err := f.eng.Enable(ctx, admin, "one"); err != nil {
		t.Fatal(err)
	}
	d := f.start(t, Config{})
	settle(t, d)
	if w, e := streams(two); w != 0 || e != 0 {
		t.Errorf("inactive backend two has %d watch and %d event streams, want none", w, e)
	}
	if w, e := streams(one); w != 1 || e != 1 {
		t.Errorf("active backend one has %d watch and %d event streams, want one of each", w, e)
	}

	if _, err := f.eng.Enable(ctx, admin, "two"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "streams moved to backend two", func() bool {
		w1, e1 := streams(one)
		w2, e2 := streams(two)
		return w1 == 0 && e1 == 0 && w2 == 1 && e2 == 1
	})
	// The new backend's watch repairs drift at once.
	two.Tamper(nil)
	waitFor(t, "backend two repaired after a tamper", func() bool { return two.Installed() != nil })
}

// A backend without change notifications gets no watch, no restart loop of
// one, and its drift is repaired by the periodic verify.
func TestDaemonWithoutChangeNotificationsRepairsByPeriodicVerify(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	desc := f.backend.Describe()
	desc.ChangeNotifications = false
	f.backend.SetDescription(desc)
	if _, err := f.eng.Enable(ctx, admin, "fake"); err != nil {
		t.Fatal(err)
	}
	d := f.start(t, Config{VerifyInterval: 50 * time.Millisecond})
	for range 3 {
		settle(t, d)
	}
	if w, e, calls := f.backend.Streams(); w != 0 || e != 1 || calls != 0 {
		t.Errorf("streams: %d watching, %d events, %d Watch calls; want 0, 1, 0 (no watch for a backend without change notifications)", w, e, calls)
	}
	if d.eventStreams.Load() != 1 {
		t.Errorf("daemon counts %d event streams, want 1: it records attempts", d.eventStreams.Load())
	}
	f.backend.Tamper(nil) // nobody is told
	waitFor(t, "periodic verify repairs the flushed rules", func() bool { return f.backend.Installed() != nil })
}

// A watch that reports ErrNotSupported is not restarted over and over; an
// event stream that ends is.
func TestSuperviseGivesUpOnAnUnsupportedWatchOnly(t *testing.T) {
	f := newFixture(t)
	d, err := New(Config{Engine: f.eng})
	if err != nil {
		t.Fatal(err)
	}
	unsupported := fmt.Errorf("watch: %w", enforce.ErrNotSupported)

	calls := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.supervise(context.Background(), "one watch", true, func(context.Context) error { calls++; return unsupported })
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("supervise kept restarting a watch that is not supported")
	}
	if calls != 1 {
		t.Errorf("unsupported watch ran %d times, want 1", calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs := make(chan struct{}, 3)
	go d.supervise(ctx, "one events", false, func(context.Context) error {
		runs <- struct{}{}
		return unsupported
	})
	for i := range 2 {
		select {
		case <-runs:
		case <-time.After(5 * time.Second):
			t.Fatalf("event stream ran %d times, want it restarted", i)
		}
	}
}

// refreshingBackend is a fake that keeps a list of local addresses.
type refreshingBackend struct {
	*fake.Backend
	refreshes atomic.Int32
}

func (r *refreshingBackend) RefreshLocal(ctx context.Context) error {
	r.refreshes.Add(1)
	return nil
}

// The periodic verify first refreshes the local address lists of backends
// that keep one (bpf), through the daemon's held backends.
func TestDaemonRefreshesLocalAddressesPeriodically(t *testing.T) {
	f := newFixture(t)
	rb := &refreshingBackend{Backend: f.backend}
	f.kernel = NewKernel([]enforce.Backend{rb})
	cfg := f.cfg
	cfg.Backends = f.kernel.Backends()
	eng, err := engine.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	f.eng = eng
	f.start(t, Config{VerifyInterval: 20 * time.Millisecond})
	waitFor(t, "two periodic refreshes of the local addresses", func() bool { return rb.refreshes.Load() >= 2 })
}
