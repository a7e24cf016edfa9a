package daemon

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/engine"
)

// countingBackend is a fake that keeps per-uid allowed counts, as nft and
// bpf do (enforce.AllowedCounter).
type countingBackend struct {
	*fake.Backend
	counts map[uint32]uint64
}

func (c *countingBackend) AllowedConnections(context.Context) (map[uint32]uint64, error) {
	return c.counts, nil
}

// The daemon wraps its backends (Kernel); the wrapper must keep what a
// backend counts visible, or smtpguard_allowed_connections_total and status
// go empty under the daemon whichever backend counts.
func TestKernelPassesAllowedCountsThrough(t *testing.T) {
	ctx := context.Background()
	counts := map[uint32]uint64{0: 8, 1001: 5}
	for _, tt := range []struct {
		name    string
		backend enforce.Backend
		want    map[uint32]uint64
		wantErr error
	}{
		{"a backend that counts", &countingBackend{Backend: fake.New("fake"), counts: counts}, counts, nil},
		{"a backend that does not", fake.New("fake"), nil, enforce.ErrNotSupported},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := NewKernel([]enforce.Backend{tt.backend}).Backends()[0]
			ac, ok := b.(enforce.AllowedCounter)
			if !ok {
				t.Fatalf("the daemon's wrapper of %s is no enforce.AllowedCounter", tt.name)
			}
			got, err := ac.AllowedConnections(ctx)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("AllowedConnections() error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("AllowedConnections() (-want +got):\n%s", diff)
			}
		})
	}
}

// Through the daemon's Kernel, what the active backend counts is in
// /metrics and in the engine's status.
func TestAllowedCountsOfAWrappedBackendInMetricsAndStatus(t *testing.T) {
	f := newFixture(t)
	f.eng.Close()
	inner := fake.New("fake")
	k := NewKernel([]enforce.Backend{&countingBackend{Backend: inner, counts: map[uint32]uint64{0: 8, 1001: 5}}})
	f.backend, f.kernel = inner, k
	f.cfg.Backends = k.Backends()
	eng, err := engine.Open(context.Background(), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	f.eng = eng
	ctx := context.Background()
	if _, err := eng.Enable(ctx, admin, "fake"); err != nil {
		t.Fatal(err)
	}
	d := f.start(t, Config{})

	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`smtpguard_allowed_connections_total{user="root"} 8`, `smtpguard_allowed_connections_total{user="alice"} 5`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	st, err := eng.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]engine.AllowedCount{{UID: 0, User: "root", Count: 8}, {UID: 1001, User: "alice", Count: 5}}, st.AllowedConnections); diff != "" {
		t.Errorf("status allowed_connections (-want +got):\n%s", diff)
	}
}
