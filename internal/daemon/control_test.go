package daemon

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/enforce/remote"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// holdLock takes the state lock as a long CLI change would, until release.
func (f *fixture) holdLock(t *testing.T) (release func()) {
	t.Helper()
	lf, err := os.OpenFile(filepath.Join(f.cfg.StateDir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var done bool
	release = func() {
		if !done {
			done = true
			lf.Close()
		}
	}
	t.Cleanup(release)
	return release
}

func TestDriftIsRepairedWhileAChangeHoldsTheLock(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.eng.Enable(ctx, admin, "fake")
	f.eng.Allow(ctx, admin, policy.KindUser, "alice")
	d := f.start(t, Config{})
	enforced := *f.backend.Installed()

	release := f.holdLock(t)
	f.backend.Tamper(nil) // nft flush ruleset during a long change
	waitFor(t, "the flushed rules restored while the lock is held", func() bool { return f.backend.Installed() != nil })
	if diff := cmp.Diff(enforced, *f.backend.Installed(), prefixEqual); diff != "" {
		t.Errorf("rules restored during the change (-want +got):\n%s", diff)
	}
	if n := promtest.ToFloat64(d.metrics.driftRepairs); n != 1 {
		t.Errorf("drift repairs = %v, want 1", n)
	}

	// The change in progress applies its new rules through the daemon (as the
	// CLI does over the socket); a flush after that restores those, never the
	// older ones.
	next := enforced.Clone()
	next.UIDs = []uint32{0, 1001, 1002}
	if err := f.kernel.Backends()[0].Apply(ctx, next); err != nil {
		t.Fatal(err)
	}
	f.backend.Tamper(nil)
	waitFor(t, "the change's rules restored", func() bool { return f.backend.Installed() != nil })
	if got := f.backend.Installed().UIDs; !slices.Equal(got, next.UIDs) {
		t.Errorf("uids restored during the change = %v, want the change's %v", got, next.UIDs)
	}

	// Once the lock is free, a proper reconcile makes the kernel match the
	// store again (this change was never committed).
	release()
	settle(t, d)
	waitFor(t, "the stored policy enforced after the lock is released", func() bool {
		return slices.Equal(f.backend.Installed().UIDs, enforced.UIDs)
	})
}

func TestDaemonServesItsBackendsOnTheSocket(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.eng.Enable(ctx, admin, "fake")
	f.start(t, Config{StateDir: f.cfg.StateDir})
	socket := remote.SocketPath(f.cfg.StateDir)
	fi, err := os.Stat(socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	info, err := remote.Ping(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(remote.Info{PID: os.Getpid(), Recording: true, Backends: []string{"fake"}}, info); diff != "" {
		t.Errorf("Ping() (-want +got):\n%s", diff)
	}
	// The CLI holds the state lock during its change and calls Apply over
	// the socket: the daemon must answer without taking the lock itself.
	f.holdLock(t)
	rs := f.backend.Installed().Clone()
	rs.UIDs = append(rs.UIDs, 1002)
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := remote.New(socket, fake.New("fake")).Apply(actx, rs); err != nil {
		t.Fatalf("Apply through the socket while the state lock is held: %v", err)
	}
	if got := f.backend.Installed().UIDs; !slices.Equal(got, rs.UIDs) {
		t.Errorf("uids after a remote apply = %v, want %v", got, rs.UIDs)
	}
}

func TestASecondDaemonOnTheStateDirIsRefused(t *testing.T) {
	f := newFixture(t)
	f.start(t, Config{StateDir: f.cfg.StateDir})
	second, err := New(Config{Engine: f.eng, StateDir: f.cfg.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = second.Run(ctx)
	var running *AlreadyRunningError
	if !errors.As(err, &running) || running.PID != os.Getpid() {
		t.Fatalf("second Run() = %v, want AlreadyRunningError naming pid %d", err, os.Getpid())
	}
	// The first daemon's socket still answers.
	if _, err := remote.Ping(ctx, remote.SocketPath(f.cfg.StateDir)); err != nil {
		t.Errorf("first daemon's socket after the refusal: %v", err)
	}
}

func TestAStalePIDFileIsTakenOver(t *testing.T) {
	f := newFixture(t)
	os.MkdirAll(f.cfg.StateDir, 0o700)
	os.WriteFile(filepath.Join(f.cfg.StateDir, PIDFile), []byte("999999\n"), 0o644) // a daemon that died
	f.start(t, Config{StateDir: f.cfg.StateDir})
	data, _ := os.ReadFile(filepath.Join(f.cfg.StateDir, PIDFile))
	if want := []byte(strconv.Itoa(os.Getpid()) + "\n"); !slices.Equal(data, want) {
		t.Errorf("pid file = %q, want %q", data, want)
	}
}

var prefixEqual = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestMetricsAuthentication(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		cfg    Config
		header string
		want   int
	}{
		{"loopback: no token needed", Config{}, "", 200},
		{"token required, none sent", Config{RequireMetricsToken: true, MetricsToken: "s3cret"}, "", 401},
		{"token required, wrong one", Config{RequireMetricsToken: true, MetricsToken: "s3cret"}, "Bearer guess", 401},
		{"token required, not bearer", Config{RequireMetricsToken: true, MetricsToken: "s3cret"}, "Basic s3cret", 401},
		{"token required, right one", Config{RequireMetricsToken: true, MetricsToken: "s3cret"}, "Bearer s3cret", 200},
		{"required without a configured token: nobody", Config{RequireMetricsToken: true}, "Bearer ", 401},
		{"a token on loopback is checked too", Config{MetricsToken: "s3cret"}, "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Engine = f.eng
			d, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest("GET", "/metrics", nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			rec := httptest.NewRecorder()
			d.Handler().ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("GET /metrics = %d, want %d", rec.Code, tt.want)
			}
			// /healthz names nobody and stays open.
			rec = httptest.NewRecorder()
			d.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != 200 {
				t.Errorf("GET /healthz = %d, want 200", rec.Code)
			}
		})
	}
}

func TestNoRepairOfADisabledPolicyWhileTheLockIsHeld(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d := f.start(t, Config{})
	// Rules a disabled policy left behind, which a plan happened to verify as
	// matching: known to the Kernel, but not to be restored.
	leftover := policy.Ruleset{Mode: policy.ModeReject, Ports: []uint16{25}, UIDs: []uint32{0}}
	f.backend.Apply(ctx, leftover)
	if drift, err := f.kernel.Backends()[0].Verify(ctx, leftover); err != nil || !drift.InSync() {
		t.Fatalf("Verify(leftover) = %v, %v", drift, err)
	}
	f.holdLock(t)
	f.backend.Tamper(nil)
	settle(t, d)
	if got := f.backend.Installed(); got != nil {
		t.Errorf("kernel after a flush of a disabled policy's leftovers = %+v, want nothing restored", got)
	}
}
