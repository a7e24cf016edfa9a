package policy

import (
	"math/rand/v2"
	"testing"
)

// The duplicate check Validate uses must flag exactly the principals that
// Same finds among the earlier ones, for any mix of names and numbers.
func TestSameSetAgreesWithSame(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"alice", "bob", "carol", ""}
	for round := range 2000 {
		var list []Principal
		for range rng.IntN(8) {
			p := Principal{Kind: KindUser, ID: uint32(1000 + rng.IntN(4)), ByID: rng.IntN(2) == 0}
			if !p.ByID || rng.IntN(2) == 0 {
				p.Name = names[rng.IntN(len(names))]
			}
			list = append(list, p)
		}
		s := newSameSet()
		for i, p := range list {
			want := false
			for _, q := range list[:i] {
				want = want || q.Same(p)
			}
			if got := s.add(p); got != want {
				t.Fatalf("round %d: %+v after %+v: add = %t, Same says %t", round, p, list[:i], got, want)
			}
		}
	}
}
