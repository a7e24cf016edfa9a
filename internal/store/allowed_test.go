package store

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Whatever sequence of allowed lists is stored (appends, removals anywhere,
// reorders, replacements), reading back gives exactly the last one, in order.
func TestPutPolicyKeepsAllowedListsExactly(t *testing.T) {
	s, _ := newTestStore(t)
	rng := rand.New(rand.NewPCG(3, 4))
	pool := func(kind policy.PrincipalKind, n int) []policy.Principal {
		var out []policy.Principal
		for i := range n {
			out = append(out, policy.Principal{Kind: kind, Name: string(kind) + strconv.Itoa(i), ID: uint32(1000 + i)})
		}
		return out
	}
	users, groups := pool(policy.KindUser, 12), pool(policy.KindGroup, 6)
	next := func(cur, all []policy.Principal) []policy.Principal {
		out := append([]policy.Principal(nil), cur...)
		switch rng.IntN(5) {
		case 0: // append one not yet there
			for _, p := range rng.Perm(len(all)) {
				if !containsPrincipal(out, all[p]) {
					return append(out, all[p])
				}
			}
		case 1: // remove one anywhere
			if len(out) > 0 {
				i := rng.IntN(len(out))
				return append(out[:i], out[i+1:]...)
			}
		case 2: // reorder
			rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		case 3: // clear
			return nil
		}
		return out // unchanged
	}
	var wantU, wantG []policy.Principal
	for round := range 300 {
		wantU, wantG = next(wantU, users), next(wantG, groups)
		p := policy.Default()
		p.Users, p.Groups = wantU, wantG
		putPolicy(t, s, p, time.Now(), "test")
		got, _, err := s.Policy(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantU, got.Users, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round %d: users (-want +got):\n%s", round, diff)
		}
		if diff := cmp.Diff(wantG, got.Groups, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round %d: groups (-want +got):\n%s", round, diff)
		}
	}
}

func containsPrincipal(list []policy.Principal, p policy.Principal) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

// The policy cache never serves what another process replaced, nor what a
// rolled-back transaction wrote.
func TestPolicyCacheFollowsOtherWritersAndRollbacks(t *testing.T) {
	a, path := newTestStore(t)
	b := openAt(t, path)
	ctx := t.Context()
	p := policy.Default()
	p.Users = []policy.Principal{{Kind: policy.KindUser, Name: "alice", ID: 1001}}
	putPolicy(t, a, p, time.Now(), "a")
	if got, _, _ := a.Policy(ctx); len(got.Users) != 1 { // fills a's cache
		t.Fatalf("a reads %+v", got.Users)
	}
	p.Users = append(p.Users, policy.Principal{Kind: policy.KindUser, Name: "bob", ID: 1002})
	putPolicy(t, b, p, time.Now(), "b")
	if got, _, _ := a.Policy(ctx); len(got.Users) != 2 {
		t.Fatalf("after another store's write, a reads %+v; want alice and bob", got.Users)
	}

	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur, _, err := tx.Policy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur.Users = nil
	if _, err := tx.PutPolicy(ctx, cur, time.Now(), "a"); err != nil {
		t.Fatal(err)
	}
	if inside, _, _ := tx.Policy(ctx); len(inside.Users) != 0 {
		t.Fatalf("inside the transaction after clearing: %+v", inside.Users)
	}
	tx.Rollback()
	if got, _, _ := a.Policy(ctx); len(got.Users) != 2 {
		t.Fatalf("after a rolled-back clear, a reads %+v; want alice and bob", got.Users)
	}
	// A returned policy is the caller's own: editing it changes no cache.
	got, _, _ := a.Policy(ctx)
	got.Users[0].Name = "mallory"
	if again, _, _ := a.Policy(ctx); again.Users[0].Name != "alice" {
		t.Fatalf("editing a returned policy changed the next read: %+v", again.Users)
	}
}
