package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSignInCountersAreBounded: past maxRows, the stalest counters that hold
// no lock or wait go; the locked ones stay.
func TestSignInCountersAreBounded(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	err := s.inTx(ctx, func(tx *Tx) error {
		for i := range 100 {
			c := SignInCounter{Account: fmt.Sprintf("name%d", i), Remote: "192.0.2.1", Failures: 1,
				WindowStart: now, LastAt: now.Add(time.Duration(i) * time.Second)}
			if i == 0 {
				c.Failures, c.LockedUntil = 5, now.Add(time.Hour) // the stalest, but locked
			}
			if err := tx.PutSignInCounter(ctx, c); err != nil {
				return err
			}
		}
		return tx.PruneSignInCounters(ctx, now.Add(-time.Hour), now.Add(100*time.Second), 50)
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM signin_attempts").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > 50 {
		t.Errorf("%d counters kept, want at most 50", n)
	}
	locks, err := s.SignInLocks(ctx, now.Add(100*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) != 1 || locks[0].Account != "name0" {
		t.Errorf("locks after pruning = %+v, want name0's kept", locks)
	}
}

// TestSignInCounterRoundTrip: what is written is read back; a missing row
// reads as zero with its keys.
func TestSignInCounterRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	at := time.UnixMilli(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC).UnixMilli())
	want := SignInCounter{Account: "admin", Remote: "192.0.2.1", Failures: 3, WindowStart: at, LastAt: at.Add(time.Second),
		NextAt: at.Add(2 * time.Second), LockedUntil: at.Add(time.Hour)}
	var got, missing SignInCounter
	err := s.inTx(ctx, func(tx *Tx) error {
		if err := tx.PutSignInCounter(ctx, want); err != nil {
			return err
		}
		var err error
		if got, err = tx.SignInCounter(ctx, "admin", "192.0.2.1"); err != nil {
			return err
		}
		missing, err = tx.SignInCounter(ctx, "admin", "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SignInCounter (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(SignInCounter{Account: "admin"}, missing); diff != "" {
		t.Errorf("missing counter (-want +got):\n%s", diff)
	}
}
