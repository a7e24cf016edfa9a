//go:build linux

package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	maybeRunHelper()
	if os.Getenv(testutil.PrivilegedEnv) != "1" {
		os.Exit(m.Run())
	}
	for _, clean := range []func() error{testutil.RemoveLeftovers, testutil.RemoveBPFFSLeftovers, testutil.RemoveCgroupLeftovers} {
		if err := clean(); err != nil {
			fmt.Fprintln(os.Stderr, "warning: removing leftovers of earlier runs:", err)
		}
	}
	// No benchmark may attach to the root cgroup, which the whole host is in.
	rootUnchanged, err := testutil.WatchRootCgroup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "list the root cgroup's programs:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := rootUnchanged(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		code = 1
	}
	os.Exit(code)
}

// Environment knobs (all optional).
const (
	// jsonEnv names the JSON output; default bench-results/latest.json at
	// the module root.
	jsonEnv = "SMTPGUARD_BENCH_JSON"
	// csfToolEnv picks the iptables flavour of the CSF-style baseline:
	// "legacy" (default) or "nft".
	csfToolEnv = "SMTPGUARD_BENCH_CSF_IPTABLES"
	// quickEnv=1 shortens every loop (fewer rounds, shorter windows, fewer
	// runs): a check that the suite works, not a measurement to publish.
	quickEnv = "SMTPGUARD_BENCH_QUICK"
	// partsEnv picks the phases to run, comma-separated, of rates (P1–P3),
	// csf (the CSF-style P4 and P7 cells), cli (P4 through the CLI) and
	// daemon (P4 through the API, P5–P8); default all of them.
	partsEnv = "SMTPGUARD_BENCH_PARTS"
	// bpfEnv=0 leaves the bpf column out (a kernel without cgroup BPF).
	bpfEnv = "SMTPGUARD_BENCH_BPF"
)

// params are the suite's loop sizes: the full run's, or quickEnv's.
type params struct {
	rounds       int           // interleaved rounds of the rate measurements
	rateWindow   time.Duration // one connect-rate sample
	streamWindow time.Duration // one throughput sample
	latencyRuns  int           // P4 runs per size
	enableRuns   int
	repairRuns   int // P5 runs at 10 uids (half at 10,000)
	flushRuns    int // P5 foreign flushes during one blocked connect loop
	floodWindow  time.Duration
	blockedCount int // P7 connects
	churnChanges int // P8 foreign set changes
	quick        bool
}

func fullParams() params {
	return params{rounds: 7, rateWindow: 800 * time.Millisecond, streamWindow: time.Second, latencyRuns: 7, enableRuns: 5,
		repairRuns: 10, flushRuns: 20, floodWindow: 5 * time.Second, blockedCount: 2000, churnChanges: 500}
}

func quickParams() params {
	return params{rounds: 2, rateWindow: 200 * time.Millisecond, streamWindow: 200 * time.Millisecond, latencyRuns: 3, enableRuns: 2,
		repairRuns: 2, flushRuns: 4, floodWindow: time.Second, blockedCount: 200, churnChanges: 50, quick: true}
}

// Sizes, bounds and addresses of the suite.
const (
	smallUIDs = 10
	largeUIDs = 10000
	fillerUID = 200000 // numeric uids without accounts, for policy sizes
	probeUID  = 300000 // fresh uids for the allow-latency runs

	rateMaxCount = 500000
	flushEvery   = 50 * time.Millisecond
	repairBound  = 3 * time.Second
	floodMax     = 10000000

	serverV4    = "192.0.2.2"
	metricsAddr = "127.0.0.1:9725"
)

// suite is the benchmark's world: client and server namespaces, listeners,
// two test users, a state directory and the built binary.
type suite struct {
	b                *testing.B
	ctx              context.Context
	binary, stateDir string
	client, server   *testutil.NetNS
	allowed, blocked testutil.User
	csfRestore       string // iptables-legacy-restore or iptables-nft-restore
	csfCmd           string // iptables-legacy or iptables-nft
	rep              *report
	p                params
	parts            map[string]bool // phases to run (partsEnv)

	// The bpf column: the backend attaches to cg, a child cgroup of the
	// cgroup2 mount this suite created (never the root), and pins in a bpf
	// file system of the suite's own. Every load helper runs in cg, also
	// for the other columns, so each column sees the same cgroup.
	withBPF bool
	cg      *testutil.Cgroup
	bpffs   string

	lost     int    // connects of the rate loops that failed without a refusal
	lostWhat string // the last such failure

	csfP4 map[int]float64 // median ms of one iptables insert, by rule count
	csfP7 []time.Duration // blocked connect durations at 10,000 rules

	bpfd *bpfDaemon // the bpf column of the daemon rows
}

// BenchmarkPrivilegedSuite measures P1–P7 of issue 8 once (whatever b.N) and
// prints one table. It fails only when it cannot measure.
func BenchmarkPrivilegedSuite(b *testing.B) {
	testutil.Privileged(b)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	b.Cleanup(cancel)
	s := newSuite(b, ctx)
	b.ResetTimer()

	if s.parts["rates"] {
		s.measureRates()
	}
	if s.parts["csf"] {
		s.measureCSFChanges()
	}
	if s.parts["cli"] {
		s.measureCLILatency()
	}
	if s.parts["daemon"] {
		if s.withBPF {
			s.measureDaemonBPF()
		}
		s.measureDaemon()
	}
	if s.p.quick {
		s.rep.Notes = append(s.rep.Notes, fmt.Sprintf("%s=1: shortened loops (%d rounds of %v samples, %d runs per latency, a %v flood); a check that the suite works, not numbers to publish.", quickEnv, s.p.rounds, s.p.rateWindow, s.p.latencyRuns, s.p.floodWindow))
	}

	b.StopTimer()
	if !s.withBPF {
		for _, r := range s.rep.Rows {
			delete(r.Values, colBPF)
		}
		s.rep.Notes = append(s.rep.Notes, bpfEnv+"=0: the bpf column was not measured.")
	} else {
		s.rep.Notes = append(s.rep.Notes, fmt.Sprintf("bpf column: `enable --backend bpf --cgroup %s`, a child cgroup of the cgroup2 mount made for this run (never the root); every load helper of every column runs in it (CLONE_INTO_CGROUP), so the columns differ only by what is attached. A refusal under bpf is ECONNREFUSED (bpf_set_retval) or EPERM, both counted as refused.", s.cg.Path))
	}
	s.rep.print(os.Stdout)
	path := os.Getenv(jsonEnv)
	if path == "" {
		path = filepath.Join(moduleRoot(b), "bench-results", "latest.json")
	}
	if err := s.rep.writeJSON(path); err != nil {
		b.Fatalf("write %s: %v", path, err)
	}
	fmt.Fprintf(os.Stdout, "written to %s\n", path)
	for _, r := range s.rep.Rows {
		for _, col := range []string{colNFT, colBPF} {
			if v, ok := r.Values[col]; ok && r.Unit == "x" && !math.IsNaN(v) {
				b.ReportMetric(v, r.ID+"-"+col+"-x")
			}
		}
	}
}

func moduleRoot(b *testing.B) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		b.Fatalf("go env GOMOD: %v (set %s to choose where the JSON goes)", err, jsonEnv)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func newSuite(b *testing.B, ctx context.Context) *suite {
	b.Helper()
	s := &suite{b: b, ctx: ctx, stateDir: b.TempDir(), rep: &report{When: time.Now(), CPUs: runtime.NumCPU()}, p: fullParams()}
	if os.Getenv(quickEnv) == "1" {
		s.p = quickParams()
	}
	s.parts = map[string]bool{"rates": true, "csf": true, "cli": true, "daemon": true}
	if v := os.Getenv(partsEnv); v != "" {
		clear(s.parts)
		for part := range strings.SplitSeq(v, ",") {
			switch part = strings.TrimSpace(part); part {
			case "rates", "csf", "cli", "daemon":
				s.parts[part] = true
			default:
				b.Fatalf("%s=%q: unknown part %q, want rates, csf, cli or daemon", partsEnv, v, part)
			}
		}
	}
	switch v := os.Getenv(bpfEnv); v {
	case "", "1":
		s.withBPF = true
	case "0":
	default:
		b.Fatalf("%s=%q: want 0 or 1", bpfEnv, v)
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		s.rep.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	flavour := os.Getenv(csfToolEnv)
	switch flavour {
	case "", "legacy":
		s.csfRestore, s.csfCmd = "iptables-legacy-restore", "iptables-legacy"
	case "nft":
		s.csfRestore, s.csfCmd = "iptables-nft-restore", "iptables-nft"
	default:
		b.Fatalf("%s=%q: want legacy or nft", csfToolEnv, flavour)
	}
	for _, tool := range []string{s.csfRestore, s.csfCmd, "nft", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s not found: install the Debian packages iptables, nftables and iproute2", tool)
		}
	}
	s.rep.CSFTool = s.csfRestore

	s.binary = filepath.Join(b.TempDir(), "smtpguard")
	build := exec.CommandContext(ctx, "go", "build", "-o", s.binary, "github.com/smtpguard/smtpguard/cmd/smtpguard")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("CGO_ENABLED=0 go build github.com/smtpguard/smtpguard/cmd/smtpguard: %v\n%s", err, out)
	}

	s.client, s.server = testutil.NewNetNS(b), testutil.NewNetNS(b)
	testutil.Veth(b, s.client, []string{"192.0.2.1/24", "2001:db8::1/64"}, s.server, []string{serverV4 + "/24", "2001:db8::2/64"})
	for _, port := range []int{25, 8080} {
		s.listen(testutil.HostPort(serverV4, port))
	}
	s.allowed = testutil.NewUser(b, "ballow", "")
	s.blocked = testutil.NewUser(b, "bblock", "")
	// Registered before the disable below, so removed after it.
	s.cg = testutil.NewCgroup(b)
	if err := testutil.RefuseRootCgroup(s.cg.Path); err != nil {
		b.Fatal(err)
	}
	s.bpffs = testutil.NewBPFFS(b)
	s.rep.Cgroup = s.cg.Path
	b.Cleanup(func() {
		// Leave nothing enforcing in the namespace before it is deleted.
		s.sg("disable")
	})
	return s
}

// listen accepts connections on addr inside the server namespace and reads
// each one to the end: a sink for throughput, an instant close for
// connect()+close (whose client resets the connection).
func (s *suite) listen(addr string) {
	var ln net.Listener
	err := s.server.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		s.b.Fatalf("listen on %s in %s: %v", addr, s.server.Name, err)
	}
	done := make(chan struct{})
	s.b.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				time.Sleep(time.Millisecond)
				continue
			}
			go func() {
				c.SetDeadline(time.Now().Add(time.Minute))
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
}

// start forks name inside the client namespace directly (no `ip netns
// exec`, whose own start-up would be timed too) and returns when it runs.
func (s *suite) start(cmd *exec.Cmd) (time.Time, error) {
	var t0 time.Time
	err := s.client.Do(func() error {
		t0 = time.Now()
		return cmd.Start() // the child inherits this thread's network namespace
	})
	return t0, err
}

// sgTimed runs smtpguard in the client namespace and returns how long it
// took from fork to exit.
func (s *suite) sgTimed(args ...string) (time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	cmd := s.command(ctx, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	t0, err := s.start(cmd)
	if err != nil {
		return 0, "", fmt.Errorf("start smtpguard %s: %w", strings.Join(args, " "), err)
	}
	err = cmd.Wait()
	d := time.Since(t0)
	if err != nil {
		return d, out.String(), fmt.Errorf("smtpguard %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return d, out.String(), nil
}

// command is smtpguard with the suite's state directory and bpf file
// system (the bpf backend never pins in the host's /sys/fs/bpf).
func (s *suite) command(ctx context.Context, args ...string) *exec.Cmd {
	testutil.RefuseRootAttach(s.b, args...)
	cmd := exec.CommandContext(ctx, s.binary, append([]string{"--state-dir", s.stateDir}, args...)...)
	cmd.Env = append(os.Environ(), "SMTPGUARD_BPFFS="+s.bpffs)
	return cmd
}

func (s *suite) sg(args ...string) string {
	s.b.Helper()
	_, out, err := s.sgTimed(args...)
	if err != nil {
		s.b.Fatal(err)
	}
	return out
}

// writePolicy writes an nft policy file allowing n uids: fillers, then the
// allowed test user. root and the MTA user are allowed on top, always.
func (s *suite) writePolicy(n int) string {
	s.b.Helper()
	return s.writePolicyFor(colNFT, n)
}

// writePolicyFor writes the policy for backend (colNFT or colBPF; bpf
// attaches to the suite's own cgroup).
func (s *suite) writePolicyFor(backend string, n int) string {
	s.b.Helper()
	users := make([]string, 0, n)
	for i := range n - 1 {
		users = append(users, strconv.Quote(strconv.Itoa(fillerUID+i)))
	}
	users = append(users, strconv.Quote(s.allowed.Name))
	where := ""
	if backend == colBPF {
		where = fmt.Sprintf("cgroup = %q\n", s.cg.Path)
	}
	policy := fmt.Sprintf(`version = 1
enabled = true
backend = %q
%smode = "reject"
ports = [25, 465, 587]
allow_local = true
allowed_users = [%s]
allowed_groups = []
`, backend, where, strings.Join(users, ", "))
	path := filepath.Join(s.b.TempDir(), fmt.Sprintf("policy-%s-%d.toml", backend, n))
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		s.b.Fatal(err)
	}
	return path
}

// csfRules is what CSF's SMTP_BLOCK with SMTP_ALLOWUSER generates, in
// iptables-restore form: one owner-match rule per allowed user in the
// output path for port 25, the test user last, then a reset.
func (s *suite) csfRules(n int) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for i := range n {
		uid := uint32(fillerUID + i)
		if i == n-1 {
			uid = s.allowed.UID
		}
		fmt.Fprintf(&b, "-A OUTPUT -p tcp --dport 25 -m owner --uid-owner %d -j ACCEPT\n", uid)
	}
	if n > 0 {
		b.WriteString("-A OUTPUT -p tcp --dport 25 -j REJECT --reject-with tcp-reset\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

func (s *suite) applyCSF(n int) {
	s.b.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", s.client.Name, s.csfRestore)
	cmd.Stdin = strings.NewReader(s.csfRules(n))
	if out, err := cmd.CombinedOutput(); err != nil {
		s.b.Fatalf("%s (%d rules) in %s: %v\n%s", s.csfRestore, n, s.client.Name, err, out)
	}
}

func (s *suite) load(req helperRequest) helperResult {
	s.b.Helper()
	res, err := runLoad(s.ctx, s.cg, s.client.Name, req)
	if err != nil {
		s.b.Fatal(err)
	}
	return res
}

func (s *suite) connectLoad(u testutil.User, port int, window time.Duration, maxCount int, timed bool) helperResult {
	return s.load(helperRequest{Mode: "connect", UID: u.UID, GID: u.GID, Addr: testutil.HostPort(serverV4, port),
		Duration: window, MaxCount: maxCount, Timed: timed})
}

// expect checks a few connects give what the configuration should.
func (s *suite) expect(cfg string, u testutil.User, port int, wantOK bool) {
	s.b.Helper()
	r := s.connectLoad(u, port, 2*time.Second, 3, false)
	if (wantOK && r.OK != r.Attempts) || (!wantOK && r.Refused != r.Attempts) {
		s.b.Fatalf("config %s: uid %d to port %d: %+v, want all %s", cfg, u.UID, port, r, map[bool]string{true: "connected", false: "refused"}[wantOK])
	}
}

// rate measures one connect()+close loop and fails on unexpected errors: it
// returns connects per second and the helper's CPU µs per connect.
func (s *suite) rate(cfg string, u testutil.User, port int) (float64, float64) {
	s.b.Helper()
	r := s.connectLoad(u, port, s.p.rateWindow, rateMaxCount, false)
	// A rare SYN lost on the veth under load (the listener's queue is
	// full) times out after connectTimeout; it is reported, not fatal.
	// Anything more means the configuration does not do what it should.
	if r.Refused > 0 || r.Attempts-r.OK > 1+r.Attempts/1000 {
		s.b.Fatalf("config %s: connect loop uid %d to port %d: %d of %d not connected (first error %q)", cfg, u.UID, port, r.Attempts-r.OK, r.Attempts, r.FirstErr)
	}
	if r.OK != r.Attempts {
		s.lost += r.Attempts - r.OK
		s.lostWhat = fmt.Sprintf("%s uid %d port %d: %q", cfg, u.UID, port, r.FirstErr)
	}
	return r.rate(), float64(r.cpuPerAttempt()) / float64(time.Microsecond)
}

// measureRates covers P1, P2 and P3: every configuration is measured in each
// of the interleaved rounds, so slow drift of the machine hits all alike.
func (s *suite) measureRates() {
	p10, p10k := s.writePolicy(smallUIDs), s.writePolicy(largeUIDs)
	type config struct {
		name   string
		apply  func()
		stream bool
		on     bool
	}
	none := func() { s.sg("disable"); s.applyCSF(0) }
	configs := []config{
		{"none", none, true, false},
		{"nft10", func() { s.applyCSF(0); s.sg("import", p10) }, false, true},
		{"nft10k", func() { s.applyCSF(0); s.sg("import", p10k) }, true, true},
		{"csf10", func() { s.sg("disable"); s.applyCSF(smallUIDs) }, false, true},
		{"csf10k", func() { s.sg("disable"); s.applyCSF(largeUIDs) }, true, true},
	}
	if s.withBPF {
		b10, b10k := s.writePolicyFor(colBPF, smallUIDs), s.writePolicyFor(colBPF, largeUIDs)
		configs = append(configs,
			config{"bpf10", func() { s.applyCSF(0); s.sg("import", b10) }, false, true},
			config{"bpf10k", func() { s.applyCSF(0); s.sg("import", b10k) }, true, true})
	}
	other, smtp, stream := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	// CPU time per connect, µs, beside each rate: wall-clock rates swing
	// with whatever else the shared machine runs, the sender's CPU less.
	otherCPU, smtpCPU := map[string][]float64{}, map[string][]float64{}
	for round := range s.p.rounds {
		// Rotate the order each round: whichever configuration comes first
		// after a reconfiguration runs a little differently, and that must
		// not always be the baseline.
		for k := range configs {
			c := configs[(k+round)%len(configs)]
			c.apply()
			if round == 0 {
				s.expect(c.name, s.allowed, 25, true)
				s.expect(c.name, s.blocked, 25, !c.on)
			}
			rate, cpu := s.rate(c.name, s.blocked, 8080)
			other[c.name], otherCPU[c.name] = append(other[c.name], rate), append(otherCPU[c.name], cpu)
			rate, cpu = s.rate(c.name, s.allowed, 25)
			smtp[c.name], smtpCPU[c.name] = append(smtp[c.name], rate), append(smtpCPU[c.name], cpu)
			if c.stream {
				r := s.load(helperRequest{Mode: "stream", UID: s.blocked.UID, GID: s.blocked.GID,
					Addr: testutil.HostPort(serverV4, 8080), Duration: s.p.streamWindow})
				stream[c.name] = append(stream[c.name], r.rate())
			}
		}
	}
	none()
	// Each round measures every configuration back to back, so a ratio
	// within one round cancels the machine's slow swings; the median over
	// rounds drops the odd disturbed sample.
	ratio := func(m map[string][]float64, a, base string) float64 {
		var rs []float64
		for i := range min(len(m[a]), len(m[base])) {
			rs = append(rs, m[a][i]/m[base][i])
		}
		return medianF(rs)
	}
	s.rep.add("P1", "non-SMTP TCP throughput, 10,000 allowed uids, vs no rules", "x", "≥ 0.99×", atLeast(0.99),
		map[string]float64{colNFT: ratio(stream, "nft10k", "none"), colBPF: ratio(stream, "bpf10k", "none"), colCSF: ratio(stream, "csf10k", "none")})
	s.rep.add("P2", "non-SMTP connect+close rate, 10 allowed uids, vs no rules", "x", "≥ 0.97×", atLeast(0.97),
		map[string]float64{colNFT: ratio(other, "nft10", "none"), colBPF: ratio(other, "bpf10", "none"), colCSF: ratio(other, "csf10", "none")})
	s.rep.add("P2", "non-SMTP connect+close rate, 10,000 allowed uids, vs no rules", "x", "≥ 0.97×", atLeast(0.97),
		map[string]float64{colNFT: ratio(other, "nft10k", "none"), colBPF: ratio(other, "bpf10k", "none"), colCSF: ratio(other, "csf10k", "none")})
	s.rep.add("P2", "port-25 connect+close rate, allowed user, 10 uids, vs no rules", "x", "≥ 0.97×", atLeast(0.97),
		map[string]float64{colNFT: ratio(smtp, "nft10", "none"), colBPF: ratio(smtp, "bpf10", "none"), colCSF: ratio(smtp, "csf10", "none")})
	s.rep.add("P3", "port-25 connect+close rate, allowed user, 10,000 uids, vs no rules", "x", "", nil,
		map[string]float64{colNFT: ratio(smtp, "nft10k", "none"), colBPF: ratio(smtp, "bpf10k", "none"), colCSF: ratio(smtp, "csf10k", "none")})
	s.rep.add("P3", "port-25 connect+close rate, allowed user, 10,000 vs 10 uids", "x", "≥ 0.95×", atLeast(0.95),
		map[string]float64{colNFT: ratio(smtp, "nft10k", "nft10"), colBPF: ratio(smtp, "bpf10k", "bpf10"), colCSF: ratio(smtp, "csf10k", "csf10")})
	s.rep.add("P2", "CPU per non-SMTP connect+close (sender's user+sys), 10 allowed uids, vs no rules", "x", "", nil,
		map[string]float64{colNFT: ratio(otherCPU, "nft10", "none"), colBPF: ratio(otherCPU, "bpf10", "none"), colCSF: ratio(otherCPU, "csf10", "none")})
	s.rep.add("P2", "CPU per non-SMTP connect+close (sender's user+sys), 10,000 allowed uids, vs no rules", "x", "", nil,
		map[string]float64{colNFT: ratio(otherCPU, "nft10k", "none"), colBPF: ratio(otherCPU, "bpf10k", "none"), colCSF: ratio(otherCPU, "csf10k", "none")})
	s.rep.add("P2", "CPU per port-25 connect+close (sender's user+sys), allowed user, 10 uids, vs no rules", "x", "", nil,
		map[string]float64{colNFT: ratio(smtpCPU, "nft10", "none"), colBPF: ratio(smtpCPU, "bpf10", "none"), colCSF: ratio(smtpCPU, "csf10", "none")})
	s.rep.add("P3", "CPU per port-25 connect+close (sender's user+sys), allowed user, 10,000 uids, vs no rules", "x", "", nil,
		map[string]float64{colNFT: ratio(smtpCPU, "nft10k", "none"), colBPF: ratio(smtpCPU, "bpf10k", "none"), colCSF: ratio(smtpCPU, "csf10k", "none")})
	cpuUS := func(m map[string][]float64, cfg string) string { return fmt.Sprintf("%.1f µs", medianF(m[cfg])) }
	bpfCPU := ""
	if s.withBPF {
		bpfCPU = fmt.Sprintf(", bpf 10 uids %s / %s, bpf 10,000 uids %s / %s", cpuUS(otherCPU, "bpf10"), cpuUS(smtpCPU, "bpf10"), cpuUS(otherCPU, "bpf10k"), cpuUS(smtpCPU, "bpf10k"))
	}
	s.rep.Notes = append(s.rep.Notes, fmt.Sprintf("CPU per connect: the helper's own user+sys time (getrusage) over each rate sample divided by its connects; it includes the sender's kernel path, netfilter and the cgroup connect programs, not softirq work charged elsewhere. Medians, non-SMTP / port-25: no rules %s / %s, nft 10 uids %s / %s, nft 10,000 uids %s / %s%s, CSF-style 10 %s / %s, 10,000 %s / %s.",
		cpuUS(otherCPU, "none"), cpuUS(smtpCPU, "none"), cpuUS(otherCPU, "nft10"), cpuUS(smtpCPU, "nft10"), cpuUS(otherCPU, "nft10k"), cpuUS(smtpCPU, "nft10k"), bpfCPU,
		cpuUS(otherCPU, "csf10"), cpuUS(smtpCPU, "csf10"), cpuUS(otherCPU, "csf10k"), cpuUS(smtpCPU, "csf10k")))
	if s.lost > 0 {
		s.rep.Notes = append(s.rep.Notes, fmt.Sprintf("Rate loops: %d connect(s) of allowed traffic timed out instead of connecting (a SYN lost under load; last: %s); counted in the rates as attempts.", s.lost, s.lostWhat))
	}
	spread := func(xs []float64) float64 { return 100 * (slices.Max(xs) - slices.Min(xs)) / medianF(xs) }
	s.rep.Notes = append(s.rep.Notes,
		fmt.Sprintf("Noise: the no-rules baseline itself varied by %.0f%% (non-SMTP connects), %.0f%% (port-25 connects) and %.0f%% (throughput) between rounds, max-min over median; ratios within that band of 1 are no measurable difference.",
			spread(other["none"]), spread(smtp["none"]), spread(stream["none"])),
		fmt.Sprintf("Baselines (no rules, medians of %d interleaved rounds): %.0f non-SMTP connect+close/s, %.0f port-25 connect+close/s, %.0f MB/s one-stream throughput over the veth pair.",
			s.p.rounds, medianF(other["none"]), medianF(smtp["none"]), medianF(stream["none"])/1e6),
		fmt.Sprintf("Rates: one helper process on one core (GOMAXPROCS=1) doing socket/connect/close(SO_LINGER 0) for %v per sample; throughput: one TCP stream for %v per sample. Ratios: median over rounds of the ratio within each round; the order of the configurations rotates from round to round.", s.p.rateWindow, s.p.streamWindow),
		fmt.Sprintf("N allowed uids = N-1 numeric filler uids + the test user (smtpguard also always allows root and the MTA user). CSF-style column: %s with one `-A OUTPUT -p tcp --dport 25 -m owner --uid-owner U -j ACCEPT` per uid, the test user LAST (worst case, what a user added last gets), then `-j REJECT --reject-with tcp-reset`.", s.csfRestore))
}

// measureCSFChanges gives the CSF-style column of P4 (one iptables command
// inserting a uid) and P7 (a blocked connect at 10,000 rules).
func (s *suite) measureCSFChanges() {
	vals := map[int]float64{}
	for _, n := range []int{smallUIDs, largeUIDs} {
		s.applyCSF(n)
		var ds []time.Duration
		for i := range s.p.latencyRuns {
			ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
			cmd := exec.CommandContext(ctx, s.csfCmd, "-w", "-I", "OUTPUT", "1", "-p", "tcp", "--dport", "25",
				"-m", "owner", "--uid-owner", strconv.Itoa(probeUID+i), "-j", "ACCEPT")
			var errOut bytes.Buffer
			cmd.Stderr = &errOut
			t0, err := s.start(cmd)
			if err == nil {
				err = cmd.Wait()
			}
			d := time.Since(t0)
			cancel()
			if err != nil {
				s.b.Fatalf("%s -I OUTPUT with %d rules: %v: %s", s.csfCmd, n, err, errOut.String())
			}
			ds = append(ds, d)
		}
		vals[n] = medianMS(ds)
	}
	s.csfP4 = vals
	s.applyCSF(largeUIDs)
	r := s.connectLoad(s.blocked, 25, 10*time.Second, s.p.blockedCount, true)
	if r.Refused != r.Attempts {
		s.b.Fatalf("CSF-style rules, blocked uid %d: %+v, want every connect refused", s.blocked.UID, r)
	}
	s.csfP7 = r.Samples
	s.applyCSF(0)
}
