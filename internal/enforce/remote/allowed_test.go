package remote

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
)

type countingBackend struct {
	*fake.Backend
	counts map[uint32]uint64
}

func (c *countingBackend) AllowedConnections(context.Context) (map[uint32]uint64, error) {
	return c.counts, nil
}

// The CLI's status reads allowed counts through its remote backends: they
// come from the local backend (a dump needs no daemon), nft and bpf alike.
func TestAllowedConnectionsReadLocally(t *testing.T) {
	socket := filepath.Join(t.TempDir(), SocketFile) // no daemon listens
	counts := map[uint32]uint64{0: 8, 1001: 5}
	b := New(socket, &countingBackend{Backend: fake.New("bpf"), counts: counts})
	got, err := b.AllowedConnections(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(counts, got); diff != "" {
		t.Errorf("AllowedConnections() (-want +got):\n%s", diff)
	}
	if _, err := New(socket, fake.New("nft")).AllowedConnections(context.Background()); !errors.Is(err, enforce.ErrNotSupported) {
		t.Errorf("AllowedConnections() of a backend without counts: %v, want ErrNotSupported", err)
	}
}
