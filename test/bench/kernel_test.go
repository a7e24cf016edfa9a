//go:build linux

package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// Names in smtpguard's table (internal/enforce/nft/README.md).
const (
	sgTable       = "smtpguard"
	sgUIDSet      = "allowed_uids"
	sgCheck       = "smtp_check"
	sgOutput      = "output"
	pollPeriod    = 200 * time.Microsecond // reads of the table and its rules
	uidPollPeriod = 2 * time.Millisecond   // reads that also dump allowed_uids
)

// kernelState is what the client namespace's kernel holds of smtpguard's
// table, read over netlink.
type kernelState struct {
	present bool
	rules   int      // rules in output + smtp_check
	uids    []uint32 // allowed_uids elements (only when asked for)
}

func (s *suite) readKernel(withUIDs bool) (kernelState, error) {
	f, err := os.Open(s.client.Path())
	if err != nil {
		return kernelState{}, err
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		return kernelState{}, fmt.Errorf("netlink in %s: %w", s.client.Name, err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return kernelState{}, fmt.Errorf("list tables in %s: %w", s.client.Name, err)
	}
	var st kernelState
	var t *nftables.Table
	for _, tb := range tables {
		if tb.Name == sgTable {
			t, st.present = tb, true
		}
	}
	if !st.present {
		return st, nil
	}
	for _, ch := range []string{sgOutput, sgCheck} {
		rules, err := c.GetRules(t, &nftables.Chain{Name: ch, Table: t})
		if err != nil {
			// The table can be seen half-built or vanish between two reads.
			return kernelState{}, nil
		}
		st.rules += len(rules)
	}
	if withUIDs {
		set, err := c.GetSetByName(t, sgUIDSet)
		if err != nil {
			return kernelState{}, nil
		}
		elems, err := c.GetSetElements(set)
		if err != nil {
			return kernelState{}, nil
		}
		for _, e := range elems {
			if len(e.Key) == 4 {
				st.uids = append(st.uids, binary.NativeEndian.Uint32(e.Key))
			}
		}
	}
	return st, nil
}

// waitKernel polls until cond holds, up to bound, and returns when it first
// held (the read that saw it done), or an error.
func (s *suite) waitKernel(bound time.Duration, withUIDs bool, cond func(kernelState) bool) (time.Time, error) {
	deadline := time.Now().Add(bound)
	for {
		st, err := s.readKernel(withUIDs)
		if err != nil {
			return time.Time{}, err
		}
		if cond(st) {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("kernel state %+v not reached within %v", st, bound)
		}
		if withUIDs {
			// Dumping 10,000 elements is itself work the daemon competes with.
			time.Sleep(uidPollPeriod)
		} else {
			time.Sleep(pollPeriod)
		}
	}
}

// waitUID polls until uid is in allowed_uids, asking the kernel for that one
// element (not dumping the set, which at 10,000 uids would cost more than
// what is measured), and returns when it was first seen.
func (s *suite) waitUID(bound time.Duration, uid uint32) (time.Time, error) {
	f, err := os.Open(s.client.Path())
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		return time.Time{}, err
	}
	set := &nftables.Set{Table: &nftables.Table{Name: sgTable, Family: nftables.TableFamilyINet}, Name: sgUIDSet, KeyType: nftables.TypeUID}
	key := binary.NativeEndian.AppendUint32(nil, uid)
	for deadline := time.Now().Add(bound); ; time.Sleep(pollPeriod) {
		if found, err := c.FindSetElements(set, []nftables.SetElement{{Key: key}}); err == nil && len(found) > 0 {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("uid %d not in %s within %v", uid, sgUIDSet, bound)
		}
	}
}

// allowLatency is P4's allow part for one backend: with smallUIDs and then
// largeUIDs allowed (the policy file policyFor writes), the median time
// from `smtpguard allow user U` (U from first on) until wait sees U in the
// kernel.
func (s *suite) allowLatency(first uint32, policyFor func(n int) string, wait func(bound time.Duration, uid uint32) (time.Time, error)) map[int]float64 {
	s.b.Helper()
	allowMS := map[int]float64{}
	next := first
	for _, n := range []int{smallUIDs, largeUIDs} {
		s.sg("import", policyFor(n))
		var ds []time.Duration
		for range s.p.latencyRuns {
			uid := next
			next++
			start := time.Now()
			if _, _, err := s.sgTimed("allow", "user", strconv.Itoa(int(uid))); err != nil {
				s.b.Fatal(err)
			}
			seen, err := wait(2*time.Second, uid)
			if err != nil {
				s.b.Fatalf("after smtpguard allow user %d (%d uids): %v", uid, n, err)
			}
			ds = append(ds, seen.Sub(start))
		}
		allowMS[n] = medianMS(ds)
	}
	return allowMS
}

// measureCLILatency is P4: `smtpguard allow user U` from fork until the uid
// is in the kernel's set (at the CLI's exit, or the first poll after it
// that sees it), and `enable` from scratch until the table is there.
func (s *suite) measureCLILatency() {
	allowMS := s.allowLatency(probeUID+100, s.writePolicy, s.waitUID)
	s.sg("import", s.writePolicy(smallUIDs))
	full, err := s.readKernel(false)
	if err != nil || !full.present {
		s.b.Fatalf("table after import: %+v, %v", full, err)
	}
	var enables []time.Duration
	for range s.p.enableRuns {
		s.sg("disable")
		if st, err := s.readKernel(false); err != nil || st.present {
			s.b.Fatalf("table after disable: %+v, %v; want none", st, err)
		}
		start := time.Now()
		if _, _, err := s.sgTimed("enable", "--backend", "nft"); err != nil {
			s.b.Fatal(err)
		}
		seen, err := s.waitKernel(2*time.Second, false, func(k kernelState) bool { return k.present && k.rules == full.rules })
		if err != nil {
			s.b.Fatalf("after smtpguard enable: %v", err)
		}
		enables = append(enables, seen.Sub(start))
	}
	bpfAllow, bpfEnable := map[int]float64{smallUIDs: math.NaN(), largeUIDs: math.NaN()}, math.NaN()
	if s.withBPF {
		bpfAllow, bpfEnable = s.measureCLILatencyBPF()
	}
	csf := func(n int) float64 {
		if v, ok := s.csfP4[n]; ok {
			return v
		}
		return math.NaN() // the csf part did not run
	}
	s.rep.add("P4", "`allow user U` (CLI, end to end) until enforced, 10 uids, median", "ms", "< 20 ms", below(20),
		map[string]float64{colNFT: allowMS[smallUIDs], colBPF: bpfAllow[smallUIDs], colCSF: csf(smallUIDs)})
	s.rep.add("P4", "`allow user U` (CLI, end to end) until enforced, 10,000 uids, median", "ms", "< 20 ms", below(20),
		map[string]float64{colNFT: allowMS[largeUIDs], colBPF: bpfAllow[largeUIDs], colCSF: csf(largeUIDs)})
	s.rep.add("P4", "`enable` from scratch until enforced (10 uids), median", "ms", "< 50 ms", below(50),
		map[string]float64{colNFT: medianMS(enables), colBPF: bpfEnable})
	s.rep.Notes = append(s.rep.Notes,
		fmt.Sprintf("P4: median of %d runs per size (%d for enable); from fork of the CLI until a netlink query of that one element, every %v, finds the uid in allowed_uids (the CLI applies before it exits); the API rows time from the request's start instead of the fork. CSF-style column: one `%s -I OUTPUT 1 ... --uid-owner U -j ACCEPT` (CSF itself restarts the whole firewall).", s.p.latencyRuns, s.p.enableRuns, pollPeriod, s.csfCmd))
}

// daemonProc is `smtpguard serve` running in the client namespace.
type daemonProc struct {
	*testutil.Proc
	logs *strings.Builder
}

func (s *suite) startDaemon(extra ...string) *daemonProc {
	s.b.Helper()
	cmd := s.command(context.Background(), append([]string{"serve", "--listen", metricsAddr, "--verify-interval", "5s"}, extra...)...)
	logs := &strings.Builder{}
	cmd.Stderr = logs
	if _, err := s.start(cmd); err != nil {
		s.b.Fatalf("start smtpguard serve: %v", err)
	}
	d := &daemonProc{Proc: testutil.Watch(cmd), logs: logs}
	s.b.Cleanup(d.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := s.metrics(); err == nil {
			return d
		}
		select {
		case <-d.Done():
			s.b.Fatalf("smtpguard serve exited: %s", d.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			s.b.Fatalf("smtpguard serve did not serve /metrics within 10s: %s", d.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// peakRSS is VmHWM of the daemon, in MiB.
func (d *daemonProc) peakRSS() (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", d.Cmd.Process.Pid)
}

// metrics scrapes /metrics from inside the client namespace.
func (s *suite) metrics() (map[string]float64, error) {
	return s.client.Metrics(metricsAddr)
}

func (s *suite) dropped() float64 {
	s.b.Helper()
	m, err := s.metrics()
	if err != nil {
		s.b.Fatalf("scrape /metrics: %v", err)
	}
	var sum float64
	for k, v := range m {
		if strings.HasPrefix(k, "smtpguard_events_dropped_total") {
			sum += v
		}
	}
	return sum
}

// recorded sums the counts of stored events for uid.
func (s *suite) recorded(uid uint32) float64 {
	s.b.Helper()
	out := s.sg("events", "--json", "--since", "1h", "--limit", "100000")
	var evs []struct {
		UID   uint32 `json:"uid"`
		Count int    `json:"count"`
	}
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		s.b.Fatalf("events --json: %v: %.200s", err, out)
	}
	var sum float64
	for _, e := range evs {
		if e.UID == uid {
			sum += float64(e.Count)
		}
	}
	return sum
}

// stableRecorded waits (bounded) until the recorded count for uid stops
// growing, so events still being aggregated are not missed or misattributed.
func (s *suite) stableRecorded(uid uint32) float64 {
	s.b.Helper()
	rec, last, stable := 0.0, -1.0, time.Now()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		rec = s.recorded(uid)
		if rec != last {
			last, stable = rec, time.Now()
		} else if time.Since(stable) > 1500*time.Millisecond {
			break
		}
	}
	return rec
}

// measureRepair flushes the client namespace's whole ruleset over netlink
// and times until smtpguard's table is back complete.
func (s *suite) measureRepair(runs, wantUIDs int) []time.Duration {
	s.b.Helper()
	if _, err := s.waitKernel(10*time.Second, true, func(k kernelState) bool { return k.present && len(k.uids) >= wantUIDs }); err != nil {
		s.b.Fatalf("daemon did not apply %d uids: %v", wantUIDs, err)
	}
	ref, err := s.readKernel(false)
	if err != nil {
		s.b.Fatal(err)
	}
	f, err := os.Open(s.client.Path())
	if err != nil {
		s.b.Fatal(err)
	}
	defer f.Close()
	var ds []time.Duration
	for range runs {
		c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
		if err != nil {
			s.b.Fatal(err)
		}
		c.FlushRuleset()
		if err := c.Flush(); err != nil {
			s.b.Fatalf("nft flush ruleset in %s: %v", s.client.Name, err)
		}
		t0 := time.Now()
		// The table comes back in one atomic transaction, so its rules
		// being there means its uids are too; a dump of every uid (itself
		// tens of milliseconds at 10,000) confirms it after the timing.
		seen, err := s.waitKernel(repairBound, false, func(k kernelState) bool { return k.present && k.rules == ref.rules })
		if err == nil {
			if k, rerr := s.readKernel(true); rerr != nil || len(k.uids) < wantUIDs {
				err = fmt.Errorf("table back with %d of %d uids (%v)", len(k.uids), wantUIDs, rerr)
			}
		}
		if err != nil {
			ds = append(ds, time.Duration(math.MaxInt64)) // not repaired within the bound: counts as a miss
			continue
		}
		ds = append(ds, seen.Sub(t0))
		time.Sleep(150 * time.Millisecond)
	}
	return ds
}

// apiAllowLatency is P4 through the JSON API of the running daemon (what a
// panel or script uses): POST /api/v1/allowed until the uid is in the
// kernel's set, without the start-up of a CLI process.
func (s *suite) apiAllowLatency(token string, first uint32, runs int, wait func(time.Duration, uint32) (time.Time, error)) float64 {
	s.b.Helper()
	client := s.client.HTTPClient(10 * time.Second)
	var ds []time.Duration
	for i := range runs {
		uid := first + uint32(i)
		req, err := http.NewRequestWithContext(s.ctx, "POST", "http://"+metricsAddr+"/api/v1/allowed",
			strings.NewReader(fmt.Sprintf(`{"kind":"user","name":"%d"}`, uid)))
		if err != nil {
			s.b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			s.b.Fatalf("POST /api/v1/allowed: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			s.b.Fatalf("POST /api/v1/allowed uid %d: %s %s", uid, resp.Status, body)
		}
		seen, err := wait(2*time.Second, uid)
		if err != nil {
			s.b.Fatalf("after POST /api/v1/allowed uid %d: %v", uid, err)
		}
		ds = append(ds, seen.Sub(start))
	}
	return medianMS(ds)
}

// measureDaemon covers P5, P6 and P7 with `smtpguard serve` running.
func (s *suite) measureDaemon() {
	s.sg("import", s.writePolicy(smallUIDs))
	token := strings.TrimSpace(s.sg("token", "create", "bench", "--role", "admin"))
	d := s.startDaemon()
	api10 := s.apiAllowLatency(token, probeUID+1000, s.p.latencyRuns, s.waitUID)

	p7 := s.connectLoad(s.blocked, 25, 10*time.Second, s.p.blockedCount, true)
	if p7.Refused != p7.Attempts {
		s.b.Fatalf("blocked uid %d under smtpguard: %+v, want every connect refused", s.blocked.UID, p7)
	}

	repair10 := s.measureRepair(s.p.repairRuns, smallUIDs)
	window := s.flushWindow(s.p.flushRuns)

	recBefore, dropBefore := s.stableRecorded(s.blocked.UID), s.dropped()
	flood := s.connectLoad(s.blocked, 25, s.p.floodWindow, floodMax, false)
	if flood.Refused != flood.Attempts {
		s.b.Fatalf("flood by blocked uid %d: %d of %d not refused (first error %q)", s.blocked.UID, flood.Attempts-flood.Refused, flood.Attempts, flood.FirstErr)
	}
	recorded := s.stableRecorded(s.blocked.UID) - recBefore
	dropped := s.dropped() - dropBefore
	rss, err := d.peakRSS()
	if err != nil {
		s.b.Fatal(err)
	}

	s.sg("import", s.writePolicy(largeUIDs))
	repair10k := s.measureRepair(s.p.repairRuns/2, largeUIDs)
	churnBusy, churnIdle := s.measureChurn(d)
	api10k := s.apiAllowLatency(token, probeUID+2000, s.p.latencyRuns, s.waitUID)
	d.Stop()
	owned := s.measureOwnedFlush()

	bd := s.bpfd
	if bd == nil { // no bpf column: every bpf cell n/a, dropped before printing
		nan := math.NaN()
		bd = &bpfDaemon{api10: nan, api10k: nan, recorded: nan, ringFull: nan, droppedAll: nan, rss: nan}
	}
	ms := func(ds []time.Duration) float64 {
		m := percentile(ds, 50)
		if m == time.Duration(math.MaxInt64) {
			return math.Inf(1)
		}
		return float64(m) / float64(time.Millisecond)
	}
	s.rep.add("P4", "`POST /api/v1/allowed` (daemon running) until enforced, 10 uids, median", "ms", "< 20 ms", below(20),
		map[string]float64{colNFT: api10, colBPF: bd.api10})
	s.rep.add("P4", "`POST /api/v1/allowed` (daemon running) until enforced, 10,000 uids, median", "ms", "< 20 ms", below(20),
		map[string]float64{colNFT: api10k, colBPF: bd.api10k})
	s.rep.add("P5", "drift repair: `nft flush ruleset` until restored, 10 uids, median", "ms", "< 100 ms", below(100),
		map[string]float64{colNFT: ms(repair10)})
	s.rep.add("P5", "drift repair: `nft flush ruleset` until restored, 10,000 uids, median", "ms", "< 100 ms", below(100),
		map[string]float64{colNFT: ms(repair10k)})
	s.rep.add("P5", fmt.Sprintf("%d foreign `nft flush ruleset`, %v apart: blocked connects that got through, daemon running", window.flushes, flushEvery), "count", "", nil,
		map[string]float64{colNFT: float64(window.OK)})
	s.rep.add("P5", fmt.Sprintf("%d foreign `nft flush ruleset`, %v apart: blocked connects that got through, table owned (nft.Config.Owner)", owned.flushes, flushEvery), "count", "0", func(v float64) bool { return v == 0 },
		map[string]float64{colNFT: owned.through()})
	s.rep.add("P6", fmt.Sprintf("flood: blocked connects/s on one core for %v", s.p.floodWindow), "/s", "", nil,
		map[string]float64{colNFT: flood.rate(), colBPF: bd.flood.rate()})
	s.rep.add("P6", "flood: daemon peak RSS (VmHWM)", "MiB", "< 64 MiB", below(64),
		map[string]float64{colNFT: rss, colBPF: bd.rss})
	s.rep.add("P6", "flood: attempts made", "count", "", nil,
		map[string]float64{colNFT: float64(flood.Attempts), colBPF: float64(bd.flood.Attempts)})
	s.rep.add("P6", "flood: events recorded", "count", "", nil,
		map[string]float64{colNFT: recorded, colBPF: bd.recorded})
	s.rep.add("P6", "flood: events dropped (smtpguard_events_dropped_total)", "count", "", nil,
		map[string]float64{colNFT: dropped, colBPF: bd.droppedAll})
	s.rep.add("P6", "flood: of those, ring buffer full (reason=\"ring_full\")", "count", "", nil,
		map[string]float64{colBPF: bd.ringFull})
	s.rep.add("P6", "flood: attempts neither recorded nor counted as dropped", "count", "", nil,
		map[string]float64{colNFT: float64(flood.Attempts) - recorded - dropped, colBPF: float64(bd.flood.Attempts) - bd.recorded - bd.droppedAll})
	csf7 := math.NaN()
	if len(s.csfP7) > 0 {
		csf7 = medianMS(s.csfP7)
	}
	s.rep.add("P7", "blocked connect() until refused, median", "ms", "< 1 ms", below(1),
		map[string]float64{colNFT: medianMS(p7.Samples), colBPF: medianMS(bd.p7), colCSF: csf7})
	s.rep.add("P7", "blocked connect() until refused, p99", "ms", "", nil,
		map[string]float64{colNFT: percentileMS(p7.Samples, 99), colBPF: percentileMS(bd.p7, 99), colCSF: percentileMS(s.csfP7, 99)})
	s.rep.add("P8", fmt.Sprintf("daemon CPU time during %d foreign set changes (fail2ban-like), 10,000 uids", 2*s.p.churnChanges), "ms", "", nil,
		map[string]float64{colNFT: float64(churnBusy) / float64(time.Millisecond)})
	s.rep.add("P8", "daemon CPU time over the same wall time, nothing changing (baseline)", "ms", "", nil,
		map[string]float64{colNFT: float64(churnIdle) / float64(time.Millisecond)})
	s.rep.Notes = append(s.rep.Notes,
		fmt.Sprintf("P5: the whole ruleset of the client namespace flushed over netlink, then polled every %v over netlink until smtpguard's table has all its rules again (one atomic transaction brings the uids with them; a dump after the timing confirms every uid is back); median of %d runs at 10 uids, %d at 10,000 (a run not repaired within %v counts as infinite).", pollPeriod, s.p.repairRuns, s.p.repairRuns/2, repairBound),
		fmt.Sprintf("P5 flushes: one blocked user loops connect() to port 25 (%d and %d attempts) while the client namespace's ruleset is flushed over netlink %d times, %v apart, starting once the block rule's counter shows the loop running; got through = connects that succeeded. Owned: an in-process nft.Config.Owner backend holds the table (the daemon stopped)%s.", window.Attempts, owned.Attempts, s.p.flushRuns, flushEvery, owned.note),
		fmt.Sprintf("P8: %d transactions adding or deleting one element of another table's set in the client namespace, as fail2ban bans and unbans, while the daemon holds 10,000 uids; CPU time is the daemon's utime+stime (10 ms ticks).", 2*s.p.churnChanges),
		fmt.Sprintf("P6: %d attempts in %v by one blocked user; recorded = growth of the summed counts of `smtpguard events --json` for that uid; RSS peak is the daemon's VmHWM over its whole run (P5 and P7 included). P7: %d blocked connects (CSF-style column: 10,000 rules, blocked user matched by none).", flood.Attempts, flood.Elapsed.Round(time.Millisecond), s.p.blockedCount))
}
