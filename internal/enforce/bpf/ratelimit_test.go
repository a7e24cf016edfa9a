package bpf

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/asm"
	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
)

func TestRateValue(t *testing.T) {
	for _, tc := range []struct {
		rate             policy.Rate
		period, interval uint64
	}{
		{policy.Rate{Count: 5, Period: time.Minute}, 60e9, 12e9},
		{policy.Rate{Count: 7, Period: time.Minute}, 60e9, 8571428571},
		{policy.Rate{Count: 1_000_000, Period: time.Second}, 1e9, 1000},
		{policy.Rate{Count: 1, Period: 24 * time.Hour}, 86400e9, 86400e9},
	} {
		v, err := rateValue(tc.rate)
		if err != nil {
			t.Fatalf("rateValue(%s): %v", tc.rate, err)
		}
		if len(v) != rateValueSize || int(mapSpecs(DefaultRingSize)[mapRates].ValueSize) != len(v) {
			t.Fatalf("rateValue(%s) is %d bytes, the map's values %d", tc.rate, len(v), mapSpecs(DefaultRingSize)[mapRates].ValueSize)
		}
		got := []uint64{uint64(nativeEndian.Uint32(v[rateOffCount:])), nativeEndian.Uint64(v[rateOffPeriod:]), nativeEndian.Uint64(v[rateOffInterval:])}
		if diff := cmp.Diff([]uint64{uint64(tc.rate.Count), tc.period, tc.interval}, got); diff != "" {
			t.Errorf("rateValue(%s) count, period, interval (-want +got):\n%s", tc.rate, diff)
		}
		if s := describeRate(v); s != tc.rate.String() {
			t.Errorf("describeRate(rateValue(%s)) = %q", tc.rate, s)
		}
	}
	if _, err := rateValue(policy.Rate{Count: 3, Period: 2}); err == nil {
		t.Error("rateValue of 3 per 2ns: no error")
	}
	// A value someone else wrote, with an interval that is not period/count.
	v, _ := rateValue(policy.Rate{Count: 5, Period: time.Minute})
	nativeEndian.PutUint64(v[rateOffInterval:], 1)
	if got, want := describeRate(v), "5/m (interval 1ns)"; got != want {
		t.Errorf("describeRate of a forged interval = %q, want %q", got, want)
	}
}

func TestEncodeRates(t *testing.T) {
	rs := policy.Ruleset{RateLimits: []policy.UIDRate{
		{UID: 1001, Rate: policy.Rate{Count: 5, Period: time.Minute}},
		{UID: 1002},
		{UID: 70000, Rate: policy.Rate{Count: 100, Period: time.Hour}},
	}}
	c, err := encode(rs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := renderRates(c.rates), "sg_rates (2): uid 1001 5/m, uid 70000 100/h\n"; got != want {
		t.Errorf("renderRates = %q, want %q (a zero rate is no limit)", got, want)
	}
	if !strings.Contains(render(rs, c), "sg_rates (2): uid 1001 5/m, uid 70000 100/h\n") {
		t.Errorf("render does not show the rates:\n%s", render(rs, c))
	}
	for name, bad := range map[string][]policy.UIDRate{
		"two rates for one uid": {{UID: 7, Rate: policy.Rate{Count: 5, Period: time.Minute}}, {UID: 7, Rate: policy.Rate{Count: 6, Period: time.Minute}}},
		"no period":             {{UID: 7, Rate: policy.Rate{Count: 5}}},
	} {
		if _, err := encode(policy.Ruleset{RateLimits: bad}, nil); err == nil {
			t.Errorf("encode with %s: no error", name)
		}
	}
	many := make([]policy.UIDRate, MaxRateLimits+1)
	for i := range many {
		many[i] = policy.UIDRate{UID: uint32(i), Rate: policy.Rate{Count: 1, Period: time.Second}}
	}
	if _, err := encode(policy.Ruleset{RateLimits: many}, nil); err == nil {
		t.Errorf("encode with %d rate limits: no error", len(many))
	}
	for _, m := range []string{mapRates, mapBuckets, mapAllowed} {
		if s := mapSpecs(DefaultRingSize)[m].MaxEntries; s < 65536 {
			t.Errorf("%s holds %d uids, want at least 65536", m, s)
		}
	}
}

func TestRateProblems(t *testing.T) {
	rate := func(uid uint32, s string) policy.UIDRate {
		r, err := policy.ParseRate(s)
		if err != nil {
			t.Fatal(err)
		}
		return policy.UIDRate{UID: uid, Rate: r}
	}
	want, _ := encode(policy.Ruleset{RateLimits: []policy.UIDRate{rate(5, "5/m"), rate(1001, "100/h"), rate(1002, "1/s")}}, nil)
	have, _ := encode(policy.Ruleset{RateLimits: []policy.UIDRate{rate(5, "5/m"), rate(1001, "100/s"), rate(2000, "3/d")}}, nil)
	got := problems(have, want)
	wantProblems := []string{
		"sg_rates holds uid 1001 at 100/s, want 100/h",
		"sg_rates lacks uid 1002 at 1/s",
		"sg_rates has unexpected uid 2000 at 3/d",
	}
	if diff := cmp.Diff(wantProblems, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	buckets := map[string]bool{string(u32Key(5)): true, string(u32Key(3)): true}
	if diff := cmp.Diff([]string{string(u32Key(3))}, staleBuckets(buckets, want.rates)); diff != "" {
		t.Errorf("staleBuckets (-want +got):\n%s", diff)
	}
}

// TestRateCheckConstruction: in every body, what the uid check and the
// exceptions allow goes through the rate check (no jump from them straight
// to "allow"); the bucket's lock is taken once and released on both of its
// paths, with no other helper call in between (the verifier's rule, checked
// here without a kernel); the time is read before the lock.
func TestRateCheckConstruction(t *testing.T) {
	for _, tc := range []struct {
		family int
		bodies []string
	}{{4, []string{"v4_"}}, {6, []string{"m_", "v6_"}}} {
		insns := connectProgram(tc.family, progOptions{setRetval: true}).Instructions
		syms := map[string]int{}
		for i, ins := range insns {
			if s := ins.Symbol(); s != "" {
				syms[s] = i
			}
		}
		for _, pfx := range tc.bodies {
			for _, l := range []string{"allowed", "report", "count", "rate_lock", "rate_deny", "rate_over"} {
				if _, ok := syms[pfx+l]; !ok {
					t.Errorf("family %d: no label %s%s", tc.family, pfx, l)
				}
			}
		}
		// Each lookup in sg_allowed_uids or an exception trie is followed by
		// a jump on a hit: to the body's rate check.
		for i, ins := range insns {
			if !ins.IsLoadFromMap() {
				continue
			}
			switch ins.Reference() {
			case mapUIDs, mapExc4, mapExc6:
			default:
				continue
			}
			j := i + 4 // LoadMapPtr, R2 = fp, R2 += off, call
			if j >= len(insns) || insns[j].OpCode.JumpOp() != asm.JNE || !strings.HasSuffix(insns[j].Reference(), "allowed") {
				t.Errorf("family %d: a hit in %s at %d is not sent to the rate check: %v", tc.family, ins.Reference(), i, insns[j])
			}
		}
		var locks, unlocks []int
		for i, ins := range insns {
			switch {
			case ins.IsBuiltinCall() && asm.BuiltinFunc(ins.Constant) == asm.FnSpinLock:
				locks = append(locks, i)
			case ins.IsBuiltinCall() && asm.BuiltinFunc(ins.Constant) == asm.FnSpinUnlock:
				unlocks = append(unlocks, i)
			}
		}
		if len(locks) != len(tc.bodies) || len(unlocks) != 2*len(tc.bodies) {
			t.Fatalf("family %d: %d spin locks and %d unlocks, want %d and %d", tc.family, len(locks), len(unlocks), len(tc.bodies), 2*len(tc.bodies))
		}
		for n, l := range locks {
			first, second := unlocks[2*n], unlocks[2*n+1]
			for i := l + 1; i < second; i++ {
				if insns[i].IsBuiltinCall() && i != first {
					t.Errorf("family %d: helper %v called while the bucket is locked", tc.family, asm.BuiltinFunc(insns[i].Constant))
				}
			}
			sawTime := slices.ContainsFunc(insns[:l], func(ins asm.Instruction) bool {
				return ins.IsBuiltinCall() && asm.BuiltinFunc(ins.Constant) == asm.FnKtimeGetBootNs
			})
			if !sawTime {
				t.Errorf("family %d: no clock read before the lock", tc.family)
			}
		}
	}
}
