package store

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
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

// countingQuerier counts the statements run through it, by their first word.
type countingQuerier struct {
	querier
	verbs map[string]int
}

func (c *countingQuerier) count(query string) {
	verb, _, _ := strings.Cut(strings.TrimSpace(query), " ")
	c.verbs[strings.ToUpper(verb)]++
}

func (c *countingQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	c.count(query)
	return c.querier.ExecContext(ctx, query, args...)
}

func (c *countingQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	c.count(query)
	return c.querier.QueryContext(ctx, query, args...)
}

func (c *countingQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	c.count(query)
	return c.querier.QueryRowContext(ctx, query, args...)
}

// Large changes of the allowed list cost a fixed number of statements and
// keep exactly the wanted principals (issue 12, hole 7: going from 10,000
// users to 3 ran 9,997 DELETEs, each scanning the table).
func TestPutAllowedLargeChangesAreFewStatements(t *testing.T) {
	many := numberedUsers(10000)
	reversed := slices.Clone(many)
	slices.Reverse(reversed)
	for _, tt := range []struct {
		name      string
		was, want []policy.Principal
	}{
		{"10,000 to their first 3", many, many[:3]},
		{"10,000 to their last 3", many, many[len(many)-3:]},
		{"10,000 to every other one", many, everyOther(many)},
		{"3 to 10,000", many[:3], many},
		{"10,000 reversed", many, reversed},
		{"10,000 to none", many, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestStore(t)
			ctx := t.Context()
			p := policy.Default()
			p.Users = tt.was
			putPolicy(t, s, p, time.Now(), "test")

			tx, err := s.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			q := &countingQuerier{querier: tx, verbs: map[string]int{}}
			if err := putAllowed(ctx, q, policy.KindUser, tt.was, tt.want); err != nil {
				t.Fatalf("putAllowed() = %v", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			total := 0
			for _, n := range q.verbs {
				total += n
			}
			if q.verbs["DELETE"] > 1 || q.verbs["INSERT"] > 1 || total > 4 {
				t.Errorf("putAllowed ran %v statements; want at most one DELETE, one INSERT and 4 in all", q.verbs)
			}
			s.cache = policyCache{} // the store was written behind its back
			got, _, err := s.Policy(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got.Users, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("users after putAllowed (-want +got):\n%s", diff)
			}
		})
	}
}

func everyOther(prs []policy.Principal) []policy.Principal {
	var out []policy.Principal
	for i := 0; i < len(prs); i += 2 {
		out = append(out, prs[i])
	}
	return out
}
