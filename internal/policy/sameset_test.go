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

func TestRulesetEqualSeesEveryField(t *testing.T) {
	base := Ruleset{Mode: ModeReject, Ports: []uint16{25, 587}, AllowLocal: true, UIDs: []uint32{0, 101},
		Exceptions: []ExceptionRule{{UID: 1001, Port: 587}}}
	if !base.Equal(base.Clone()) {
		t.Fatal("a ruleset differs from its clone")
	}
	empty := Ruleset{Mode: ModeReject}
	if !empty.Equal(Ruleset{Mode: ModeReject, Ports: []uint16{}, UIDs: []uint32{}, Exceptions: []ExceptionRule{}}) {
		t.Error("nil and empty lists compare unequal")
	}
	for name, change := range map[string]func(*Ruleset){
		"mode":        func(r *Ruleset) { r.Mode = ModeLog },
		"ports":       func(r *Ruleset) { r.Ports = []uint16{25} },
		"allow local": func(r *Ruleset) { r.AllowLocal = false },
		"uids":        func(r *Ruleset) { r.UIDs = []uint32{0, 102} },
		"exceptions":  func(r *Ruleset) { r.Exceptions = []ExceptionRule{{UID: 1001, Port: 25}} },
	} {
		other := base.Clone()
		change(&other)
		if base.Equal(other) {
			t.Errorf("rulesets differing in %s compare equal", name)
		}
	}
	c := base.Clone()
	c.UIDs[0] = 7
	if base.UIDs[0] != 0 {
		t.Error("Clone shares its uid list with the original")
	}
}
