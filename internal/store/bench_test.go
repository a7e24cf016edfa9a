package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// numberedUsers returns n allowed users given by uid, 20000 upwards.
func numberedUsers(n int) []policy.Principal {
	out := make([]policy.Principal, n)
	for i := range out {
		out[i] = policy.Principal{Kind: policy.KindUser, ID: uint32(20000 + i), ByID: true}
	}
	return out
}

// benchPut commits p as one transaction.
func benchPut(b *testing.B, s *Store, p policy.Policy) {
	b.Helper()
	ctx := b.Context()
	tx, err := s.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.PutPolicy(ctx, p, time.Now(), "bench"); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPutAllowed10kTo3 measures going from 10,000 allowed users back to
// their first 3 (issue 12, hole 7: row-by-row deletes made it quadratic).
func BenchmarkPutAllowed10kTo3(b *testing.B) {
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	many, few := policy.Default(), policy.Default()
	many.Users = numberedUsers(10000)
	few.Users = many.Users[:3]
	for b.Loop() {
		b.StopTimer()
		benchPut(b, s, many)
		b.StartTimer()
		benchPut(b, s, few)
	}
}

// BenchmarkPutAllowed3To10k measures the way up: 10,000 users appended.
func BenchmarkPutAllowed3To10k(b *testing.B) {
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	many, few := policy.Default(), policy.Default()
	many.Users = numberedUsers(10000)
	few.Users = many.Users[:3]
	for b.Loop() {
		b.StopTimer()
		benchPut(b, s, few)
		b.StartTimer()
		benchPut(b, s, many)
	}
}

// BenchmarkPutAllowedReorder10k measures a full rewrite: 10,000 users, reversed.
func BenchmarkPutAllowedReorder10k(b *testing.B) {
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	fwd, rev := policy.Default(), policy.Default()
	fwd.Users = numberedUsers(10000)
	for i := len(fwd.Users) - 1; i >= 0; i-- {
		rev.Users = append(rev.Users, fwd.Users[i])
	}
	for b.Loop() {
		b.StopTimer()
		benchPut(b, s, fwd)
		b.StartTimer()
		benchPut(b, s, rev)
	}
}
