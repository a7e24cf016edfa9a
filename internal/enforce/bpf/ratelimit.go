package bpf

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Rate limits on allowed connections (policy.Ruleset.RateLimits) and the
// per-uid count of allowed connections. Everything here is separate from
// the rest of the programs: the bodies jump to rateCheck once a connection
// is allowed (by the uid or an exception), and to their report with R7
// holding eventFlagRateLimited when it is over its limit.
//
// The limit is a token bucket kept as GCRA (the generic cell rate
// algorithm of ATM traffic policing): per uid one "theoretical arrival
// time" TAT. With T = period/count (the emission interval) a connection at now
// passes when max(TAT, now) + T <= now + period, and then TAT becomes
// max(TAT, now) + T. That lets count connections start at once and refills
// count per period, with one 64-bit word of state and no division in the
// program. The check and the update happen under the bucket's
// bpf_spin_lock, so connects racing on several CPUs are admitted exactly as
// if they came one after the other: no over-admission.
const (
	mapRates   = "sg_rates"       // uid → rateValue: the limit
	mapBuckets = "sg_buckets"     // uid → bucketValue: the state, written by the programs
	mapAllowed = "sg_allowed_cnt" // uid → u64: connections let through to restricted ports
)

// MaxRateLimits bounds Ruleset.RateLimits; the buckets and the allowed
// counters hold as many uids.
const MaxRateLimits = 1 << 17

// The rate value: u32 count, u32 zero, u64 period in ns, u64 interval
// (period/count) in ns, native byte order.
const (
	rateOffCount    = 0
	rateOffPeriod   = 8
	rateOffInterval = 16
	rateValueSize   = 24
)

// The bucket value: struct bpf_spin_lock (u32), u32 zero, u64 TAT in
// CLOCK_BOOTTIME ns. A zero TAT is a full bucket.
const (
	bucketOffTAT    = 8
	bucketValueSize = 16
)

// eventFlagRateLimited marks an event refused (or, under log, let through)
// because an allowed uid was over its rate limit.
const eventFlagRateLimited = 2

// Stack slots of rateCheck, below the rest of the programs' (prog.go).
const (
	stRateNow    = -200 // u64 now
	stRatePeriod = -208 // u64 period
	stRateIv     = -216 // u64 interval
	stRateVal    = -232 // 16 bytes: a new bucket or counter
)

const bpfNoExist = 1 // BPF_NOEXIST

// rateMapSpecs declares the rate, bucket and counter maps. The bucket's
// value carries BTF: the kernel only lets programs take a bpf_spin_lock
// that the map's BTF declares.
func rateMapSpecs() map[string]*ebpf.MapSpec {
	u32 := &btf.Int{Name: "__u32", Size: 4}
	u64 := &btf.Int{Name: "__u64", Size: 8}
	lock := &btf.Struct{Name: "bpf_spin_lock", Size: 4, Members: []btf.Member{{Name: "val", Type: u32}}}
	bucket := &btf.Struct{Name: "sg_bucket", Size: bucketValueSize, Members: []btf.Member{
		{Name: "lock", Type: lock, Offset: 0},
		{Name: "pad", Type: u32, Offset: 32},
		{Name: "tat", Type: u64, Offset: bucketOffTAT * 8},
	}}
	return map[string]*ebpf.MapSpec{
		mapRates:   {Name: mapRates, Type: ebpf.Hash, KeySize: 4, ValueSize: rateValueSize, MaxEntries: MaxRateLimits, Flags: flagNoPrealloc},
		mapBuckets: {Name: mapBuckets, Type: ebpf.Hash, KeySize: 4, ValueSize: bucketValueSize, MaxEntries: MaxRateLimits, Flags: flagNoPrealloc, Key: u32, Value: bucket},
		mapAllowed: {Name: mapAllowed, Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: MaxRateLimits, Flags: flagNoPrealloc},
	}
}

// encodeRates is what sg_rates must hold for rs: key and value bytes.
func encodeRates(rs policy.Ruleset) (map[string]string, error) {
	out := map[string]string{}
	if len(rs.RateLimits) > MaxRateLimits {
		return nil, fmt.Errorf("%d rate limits: the bpf backend holds at most %d", len(rs.RateLimits), MaxRateLimits)
	}
	for _, ur := range rs.RateLimits {
		if ur.Rate.IsZero() {
			continue
		}
		v, err := rateValue(ur.Rate)
		if err != nil {
			return nil, fmt.Errorf("rate limit of uid %d: %w", ur.UID, err)
		}
		k := string(u32Key(ur.UID))
		if old, ok := out[k]; ok && old != string(v) {
			return nil, fmt.Errorf("uid %d has two rate limits", ur.UID)
		}
		out[k] = string(v)
	}
	return out, nil
}

// rateValue encodes r for sg_rates.
func rateValue(r policy.Rate) ([]byte, error) {
	if r.Period <= 0 || r.Period/time.Duration(r.Count) <= 0 {
		return nil, fmt.Errorf("rate %s: the period must be at least a nanosecond per connection", r)
	}
	v := make([]byte, rateValueSize)
	nativeEndian.PutUint32(v[rateOffCount:], r.Count)
	nativeEndian.PutUint64(v[rateOffPeriod:], uint64(r.Period))
	nativeEndian.PutUint64(v[rateOffInterval:], uint64(r.Period/time.Duration(r.Count)))
	return v, nil
}

// describeRate renders an sg_rates value ("5/m"); a value whose interval
// is not its period/count (written by someone else) says so.
func describeRate(v []byte) string {
	if len(v) != rateValueSize {
		return fmt.Sprintf("%x", v)
	}
	r := policy.Rate{Count: nativeEndian.Uint32(v[rateOffCount:]), Period: time.Duration(nativeEndian.Uint64(v[rateOffPeriod:]))}
	s := r.String()
	if want, err := rateValue(r); err != nil || string(want) != string(v) {
		s += fmt.Sprintf(" (interval %dns)", nativeEndian.Uint64(v[rateOffInterval:]))
	}
	return s
}

func describeUID(k []byte) string {
	if len(k) != 4 {
		return fmt.Sprintf("%x", k)
	}
	return "uid " + strconv.FormatUint(uint64(nativeEndian.Uint32(k)), 10)
}

// rateProblems describes every difference between sg_rates and want.
func rateProblems(have, want map[string]string) []string {
	var out []string
	for _, k := range sortedKeys(want) {
		switch h, ok := have[k]; {
		case !ok:
			out = append(out, fmt.Sprintf("%s lacks %s at %s", mapRates, describeUID([]byte(k)), describeRate([]byte(want[k]))))
		case h != want[k]:
			out = append(out, fmt.Sprintf("%s holds %s at %s, want %s", mapRates, describeUID([]byte(k)), describeRate([]byte(h)), describeRate([]byte(want[k]))))
		}
	}
	for _, k := range sortedKeys(have) {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("%s has unexpected %s at %s", mapRates, describeUID([]byte(k)), describeRate([]byte(have[k]))))
		}
	}
	return out
}

// staleBuckets lists the buckets of uids without a rate limit (keys of
// buckets absent from rates), which Apply deletes.
func staleBuckets(buckets map[string]bool, rates map[string]string) []string {
	var out []string
	for k := range buckets {
		if _, ok := rates[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// renderRates is the plan's line for sg_rates.
func renderRates(rates map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(rates) {
		parts = append(parts, describeUID([]byte(k))+" "+describeRate([]byte(rates[k])))
	}
	return fmt.Sprintf("%s (%d): %s\n", mapRates, len(parts), strings.Join(parts, ", "))
}

// sortedKeys sorts by uid (the keys are native-endian u32s).
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if len(a) == 4 && len(b) == 4 {
			return int(int64(nativeEndian.Uint32([]byte(a))) - int64(nativeEndian.Uint32([]byte(b))))
		}
		return strings.Compare(a, b)
	})
	return keys
}

// rateCheck runs for a connection the uid check or an exception allowed
// (label pfx+"allowed", uid in R7). A uid without a rate limit passes; one
// with a limit passes while its bucket has room. What passes is counted in
// sg_allowed_cnt and goes to "allow"; what is over goes to pfx+"report"
// with R7 = eventFlagRateLimited, where it is reported and refused as a
// blocked connection would be (by mode). R6, R8, R9 are left alone.
func rateCheck(pfx string) asm.Instructions {
	var insns asm.Instructions
	insns = append(insns, asm.StoreMem(asm.RFP, stSmall, asm.R7, asm.Word).WithSymbol(pfx+"allowed"))
	insns = append(insns, lookup(mapRates, stSmall)...)
	insns = append(insns,
		asm.JEq.Imm(asm.R0, 0, pfx+"count"),
		asm.LoadMem(asm.R1, asm.R0, rateOffPeriod, asm.DWord),
		asm.LoadMem(asm.R2, asm.R0, rateOffInterval, asm.DWord),
		asm.StoreMem(asm.RFP, stRatePeriod, asm.R1, asm.DWord),
		asm.StoreMem(asm.RFP, stRateIv, asm.R2, asm.DWord),
		// The time before the lock: no helper may run while it is held.
		asm.FnKtimeGetBootNs.Call(),
		asm.StoreMem(asm.RFP, stRateNow, asm.R0, asm.DWord),
	)
	insns = append(insns, lookup(mapBuckets, stSmall)...)
	insns = append(insns, asm.JNE.Imm(asm.R0, 0, pfx+"rate_lock"))
	// The uid's first limited connection: a full bucket (TAT 0). NOEXIST
	// makes a racing CPU's insert lose harmlessly; both then lock the one
	// bucket.
	insns = append(insns,
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, stRateVal, asm.R1, asm.DWord),
		asm.StoreMem(asm.RFP, stRateVal+8, asm.R1, asm.DWord),
	)
	insns = append(insns, update(mapBuckets, stSmall, stRateVal, bpfNoExist)...)
	insns = append(insns, lookup(mapBuckets, stSmall)...)
	insns = append(insns,
		// No bucket (the map full, no memory): fail closed, as over the limit.
		asm.JEq.Imm(asm.R0, 0, pfx+"rate_over"),
		asm.Mov.Reg(asm.R7, asm.R0).WithSymbol(pfx+"rate_lock"),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.FnSpinLock.Call(),
		// R1 = max(TAT, now) + interval; R2 = now + period.
		asm.LoadMem(asm.R1, asm.R7, bucketOffTAT, asm.DWord),
		asm.LoadMem(asm.R2, asm.RFP, stRateNow, asm.DWord),
		asm.JGE.Reg(asm.R1, asm.R2, pfx+"rate_tat"),
		asm.Mov.Reg(asm.R1, asm.R2),
		asm.LoadMem(asm.R3, asm.RFP, stRateIv, asm.DWord).WithSymbol(pfx+"rate_tat"),
		asm.Add.Reg(asm.R1, asm.R3),
		asm.LoadMem(asm.R4, asm.RFP, stRatePeriod, asm.DWord),
		asm.Add.Reg(asm.R2, asm.R4),
		asm.JGT.Reg(asm.R1, asm.R2, pfx+"rate_deny"),
		asm.StoreMem(asm.R7, bucketOffTAT, asm.R1, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.FnSpinUnlock.Call(),
		asm.Ja.Label(pfx+"count"),
		asm.Mov.Reg(asm.R1, asm.R7).WithSymbol(pfx+"rate_deny"),
		asm.FnSpinUnlock.Call(),
		asm.Mov.Imm(asm.R7, eventFlagRateLimited).WithSymbol(pfx+"rate_over"),
		asm.Ja.Label(pfx+"report"),
	)
	// Count what passes (the key at stSmall is still the uid).
	count := lookup(mapAllowed, stSmall)
	count[0] = count[0].WithSymbol(pfx + "count")
	insns = append(insns, count...)
	insns = append(insns,
		asm.JNE.Imm(asm.R0, 0, pfx+"count_add"),
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, stRateVal, asm.R1, asm.DWord),
	)
	insns = append(insns, update(mapAllowed, stSmall, stRateVal, bpfNoExist)...)
	insns = append(insns, lookup(mapAllowed, stSmall)...)
	insns = append(insns,
		asm.JEq.Imm(asm.R0, 0, "allow"), // the counter map is full: still allowed
		asm.Mov.Imm(asm.R1, 1).WithSymbol(pfx+"count_add"),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Ja.Label("allow"),
	)
	return insns
}

// update calls bpf_map_update_elem(map, fp+keyOff, fp+valOff, flags).
func update(m string, keyOff, valOff int16, flags int32) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, 0).WithReference(m),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(keyOff)),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, int32(valOff)),
		asm.Mov.Imm(asm.R4, flags),
		asm.FnMapUpdateElem.Call(),
	}
}

// reportStart begins a body's report (label pfx+"report"): a blocked
// connection falls into it with R7 = 0, a rate-limited one jumps to it with
// R7 = eventFlagRateLimited, which eventMarkFlags ORs into the event.
func reportStart(pfx string, prologue asm.Instructions) asm.Instructions {
	insns := asm.Instructions{asm.Mov.Imm(asm.R7, 0)}
	prologue[0] = prologue[0].WithSymbol(pfx + "report")
	insns = append(insns, prologue...)
	return append(insns,
		asm.LoadMem(asm.R1, asm.RFP, stEvent+evFlags, asm.Byte),
		asm.Or.Reg(asm.R1, asm.R7),
		asm.StoreMem(asm.RFP, stEvent+evFlags, asm.R1, asm.Byte),
	)
}
