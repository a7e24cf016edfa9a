package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
)

func commitTx(t *testing.T, s *Store, fn func(tx *Tx)) {
	t.Helper()
	tx, err := s.Begin(t.Context())
	if err != nil {
		t.Fatalf("Begin() = %v", err)
	}
	defer tx.Rollback()
	fn(tx)
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit() = %v", err)
	}
}

func TestHoldsRoundTripAndSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", FileName)
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t0 := time.UnixMilli(1_800_000_000_000)
	timed := Hold{UID: 1001, User: "alice", Since: t0, Until: t0.Add(time.Hour), Reason: "burst", By: "hold-after 10/m", Count: 12}
	forever := Hold{UID: 1002, User: "bob", Since: t0.Add(time.Minute), Reason: "abuse report", By: "cli:root"}
	rev0, _ := s.HoldsRevision(t.Context())
	commitTx(t, s, func(tx *Tx) {
		for _, h := range []*Hold{&timed, &forever} {
			id, err := tx.InsertHold(t.Context(), *h)
			if err != nil {
				t.Fatalf("InsertHold(%+v) = %v", *h, err)
			}
			h.ID = id
		}
		if err := tx.PutHoldSettings(t.Context(), HoldSettings{After: policy.Rate{Count: 10, Period: time.Minute}, For: 0}); err != nil {
			t.Fatalf("PutHoldSettings() = %v", err)
		}
	})
	if rev, _ := s.HoldsRevision(t.Context()); rev == rev0 {
		t.Errorf("HoldsRevision() = %d after holds, unchanged", rev)
	}
	s.Close()

	s = openAt(t, path) // a daemon restart, a reboot
	got, err := s.ActiveHolds(t.Context(), t0.Add(2*time.Minute))
	if err != nil {
		t.Fatalf("ActiveHolds() = %v", err)
	}
	if diff := cmp.Diff([]Hold{timed, forever}, got); diff != "" {
		t.Errorf("ActiveHolds() after reopen (-want +got):\n%s", diff)
	}
	hs, err := s.HoldSettings(t.Context())
	if want := (HoldSettings{After: policy.Rate{Count: 10, Period: time.Minute}}); err != nil || hs != want {
		t.Errorf("HoldSettings() = %+v, %v; want %+v", hs, err, want)
	}

	// An hour on, the timed hold is no longer active, whether or not
	// anything marked it.
	later := t0.Add(time.Hour)
	if got, _ := s.ActiveHolds(t.Context(), later); len(got) != 1 || got[0].ID != forever.ID {
		t.Errorf("ActiveHolds(at its end) = %+v, want only bob's", got)
	}
	commitTx(t, s, func(tx *Tx) {
		exp, err := tx.ExpireHolds(t.Context(), later)
		if err != nil || len(exp) != 1 || exp[0].ID != timed.ID || !exp[0].ReleasedAt.Equal(timed.Until) || exp[0].ReleasedBy != "expiry" {
			t.Errorf("ExpireHolds() = %+v, %v; want alice's, ended at its until by expiry", exp, err)
		}
		rel, err := tx.ReleaseHolds(t.Context(), 1002, later, "api:ops")
		if err != nil || len(rel) != 1 || rel[0].ID != forever.ID || rel[0].ReleasedBy != "api:ops" {
			t.Errorf("ReleaseHolds(1002) = %+v, %v; want bob's", rel, err)
		}
		if again, err := tx.ReleaseHolds(t.Context(), 1002, later, "api:ops"); err != nil || len(again) != 0 {
			t.Errorf("ReleaseHolds(1002) again = %+v, %v; want nothing", again, err)
		}
	})
	if got, _ := s.ActiveHolds(t.Context(), later); len(got) != 0 {
		t.Errorf("ActiveHolds() after release = %+v, want none", got)
	}
	hist, err := s.HoldHistory(t.Context(), 1001, t0.Add(-time.Hour))
	if err != nil || len(hist) != 1 || hist[0].Count != 12 || hist[0].ReleasedBy != "expiry" {
		t.Errorf("HoldHistory(1001) = %+v, %v; want the ended hold kept", hist, err)
	}
}

func TestTakeHoldNoticesOnce(t *testing.T) {
	s, _ := newTestStore(t)
	t0 := time.UnixMilli(1_800_000_000_000)
	var notes []HoldNoticeRow
	take := func() []HoldNoticeRow {
		commitTx(t, s, func(tx *Tx) {
			var err error
			if notes, err = tx.TakeHoldNotices(t.Context()); err != nil {
				t.Fatalf("TakeHoldNotices() = %v", err)
			}
		})
		return notes
	}
	commitTx(t, s, func(tx *Tx) {
		tx.InsertHold(t.Context(), Hold{UID: 7, User: "u7", Since: t0, By: "cli:root"})
		tx.InsertHold(t.Context(), Hold{UID: 8, User: "u8", Since: t0, By: "cli:root"})
		tx.ReleaseHolds(t.Context(), 8, t0.Add(time.Second), "cli:root")
	})
	type note struct {
		UID   uint32
		Ended bool
	}
	summary := func(rows []HoldNoticeRow) []note {
		var out []note
		for _, r := range rows {
			out = append(out, note{r.UID, r.Ended})
		}
		return out
	}
	if diff := cmp.Diff([]note{{7, false}, {8, false}, {8, true}}, summary(take())); diff != "" {
		t.Errorf("first TakeHoldNotices() (-want +got):\n%s", diff)
	}
	if got := take(); len(got) != 0 {
		t.Errorf("second TakeHoldNotices() = %+v, want nothing: each notice once", got)
	}
	commitTx(t, s, func(tx *Tx) { tx.ReleaseHolds(t.Context(), 7, t0.Add(time.Minute), "web:admin") })
	if diff := cmp.Diff([]note{{7, true}}, summary(take())); diff != "" {
		t.Errorf("TakeHoldNotices() after a release (-want +got):\n%s", diff)
	}
}
