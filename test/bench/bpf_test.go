//go:build linux

package bench

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/smtpguard/smtpguard/internal/enforce/bpf"
)

// bpfUIDMap is the allowed-uids map's pin name (internal/enforce/bpf/README.md).
const bpfUIDMap = "sg_allowed_uids"

// bpfDaemon is what measureDaemonBPF measured, for measureDaemon's rows.
type bpfDaemon struct {
	api10, api10k float64 // P4 through the API, median ms
	p7            []time.Duration
	flood         helperResult
	recorded      float64
	ringFull      float64 // smtpguard_events_dropped_total{reason="ring_full"}
	droppedAll    float64 // every reason
	droppedWhy    string  // "reason n, ..." of droppedAll
	rss           float64
}

// waitBPFUID polls until uid is in the pinned allowed-uids map (a map
// update is what the bpf backend's P4 comes down to), and returns when it
// was first seen.
func (s *suite) waitBPFUID(bound time.Duration, uid uint32) (time.Time, error) {
	path := filepath.Join(s.bpffs, bpf.PinDirName, bpfUIDMap)
	deadline := time.Now().Add(bound)
	var m *ebpf.Map
	defer func() {
		if m != nil {
			m.Close()
		}
	}()
	key := binary.NativeEndian.AppendUint32(nil, uid)
	for ; ; time.Sleep(pollPeriod) {
		if m == nil {
			m, _ = ebpf.LoadPinnedMap(path, nil) // pinned by the first enable
		}
		if m != nil {
			val := make([]byte, m.ValueSize())
			if m.Lookup(key, val) == nil {
				return time.Now(), nil
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("uid %d not in %s within %v", uid, path, bound)
		}
	}
}

// bpfAttached says whether the suite's cgroup runs programs on both connect
// hooks (attached: true) or on neither (false); anything else is an error.
func (s *suite) bpfAttached() (bool, error) {
	progs, err := bpf.CgroupPrograms(s.cg.Path)
	if err != nil {
		return false, err
	}
	n := 0
	for _, ids := range progs {
		if len(ids) > 0 {
			n++
		}
	}
	switch n {
	case 0:
		return false, nil
	case len(progs):
		return true, nil
	}
	return false, fmt.Errorf("cgroup %s half attached: %v", s.cg.Path, progs)
}

// measureCLILatencyBPF is P4 for bpf: `allow user U` until the uid is in
// the pinned map, and `enable` from scratch until both programs are
// attached to the cgroup (the maps are filled before the attach).
func (s *suite) measureCLILatencyBPF() (allowMS map[int]float64, enableMS float64) {
	s.b.Helper()
	allowMS = s.allowLatency(probeUID+500, func(n int) string { return s.writePolicyFor(colBPF, n) }, s.waitBPFUID)
	s.sg("import", s.writePolicyFor(colBPF, smallUIDs))
	var enables []time.Duration
	for range s.p.enableRuns {
		s.sg("disable")
		if on, err := s.bpfAttached(); err != nil || on {
			s.b.Fatalf("bpf after disable: attached %v, %v; want nothing attached", on, err)
		}
		start := time.Now()
		if _, _, err := s.sgTimed("enable", "--backend", "bpf", "--cgroup", s.cg.Path); err != nil {
			s.b.Fatal(err)
		}
		var seen time.Time
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(pollPeriod) {
			on, err := s.bpfAttached()
			if err != nil {
				s.b.Fatal(err)
			}
			if on {
				seen = time.Now()
				break
			}
			if time.Now().After(deadline) {
				s.b.Fatalf("bpf: programs not attached to %s within 2s of enable", s.cg.Path)
			}
		}
		enables = append(enables, seen.Sub(start))
	}
	s.sg("disable")
	return allowMS, medianMS(enables)
}

// measureDaemonBPF is P4 (API), P6 and P7 with `smtpguard serve` enforcing
// through bpf. P5 (a foreign `nft flush ruleset`) and P8 (another nftables
// table churning) do not touch bpf's state, so they have no bpf cells.
func (s *suite) measureDaemonBPF() {
	s.b.Helper()
	s.sg("import", s.writePolicyFor(colBPF, smallUIDs))
	token := strings.TrimSpace(s.sg("token", "create", "bench-bpf", "--role", "admin"))
	d := s.startDaemon("--cgroup", s.cg.Path)
	var r bpfDaemon
	r.api10 = s.apiAllowLatency(token, probeUID+3000, s.p.latencyRuns, s.waitBPFUID)

	r.p7 = s.connectLoad(s.blocked, 25, 10*time.Second, s.p.blockedCount, true).Samples
	recBefore, reasonsBefore := s.stableRecorded(s.blocked.UID), s.droppedReasons()
	r.flood = s.connectLoad(s.blocked, 25, s.p.floodWindow, floodMax, false)
	if r.flood.Refused != r.flood.Attempts {
		s.b.Fatalf("bpf: flood by blocked uid %d: %d of %d not refused (first error %q)", s.blocked.UID, r.flood.Attempts-r.flood.Refused, r.flood.Attempts, r.flood.FirstErr)
	}
	r.recorded = s.stableRecorded(s.blocked.UID) - recBefore
	var why []string
	for reason, n := range s.droppedReasons() {
		if d := n - reasonsBefore[reason]; d > 0 {
			r.droppedAll += d
			why = append(why, fmt.Sprintf("%s %.0f", reason, d))
		}
	}
	slices.Sort(why)
	r.droppedWhy = strings.Join(why, ", ")
	r.ringFull = s.droppedReasons()["ring_full"] - reasonsBefore["ring_full"]
	rss, err := d.peakRSS()
	if err != nil {
		s.b.Fatal(err)
	}
	r.rss = rss

	s.sg("import", s.writePolicyFor(colBPF, largeUIDs))
	r.api10k = s.apiAllowLatency(token, probeUID+4000, s.p.latencyRuns, s.waitBPFUID)
	d.Stop()
	s.sg("disable")
	s.bpfd = &r
	s.rep.Notes = append(s.rep.Notes, fmt.Sprintf("bpf P6: %d attempts in %v; ring_full = growth of smtpguard_events_dropped_total{reason=\"ring_full\"} (the %d KiB ring buffer overflowing before the daemon reads it); dropped for every reason: %.0f (%s). bpf P4: until a lookup of the uid in the pinned %s map finds it, polled every %v; enable: until both connect programs are attached to the cgroup. P5 and P8 concern nftables state and have no bpf cells.",
		r.flood.Attempts, r.flood.Elapsed.Round(time.Millisecond), bpf.DefaultRingSize>>10, r.droppedAll, cmp.Or(r.droppedWhy, "none"), bpfUIDMap, pollPeriod))
}

// droppedReasons is smtpguard_events_dropped_total by reason.
func (s *suite) droppedReasons() map[string]float64 {
	s.b.Helper()
	m, err := s.metrics()
	if err != nil {
		s.b.Fatalf("scrape /metrics: %v", err)
	}
	out := map[string]float64{}
	for k, v := range m {
		if rest, ok := strings.CutPrefix(k, `smtpguard_events_dropped_total{reason="`); ok {
			out[strings.TrimSuffix(rest, `"}`)] = v
		}
	}
	return out
}
