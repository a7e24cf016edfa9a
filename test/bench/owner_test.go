//go:build linux

package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/smtpguard/smtpguard/internal/enforce/nft"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// flushResult is one blocked connect loop during foreign flushes.
type flushResult struct {
	helperResult
	flushes int
	owned   bool   // the table was owned (measureOwnedFlush)
	note    string // why there is no owned measurement
}

func (r flushResult) through() float64 {
	if r.note != "" {
		return math.NaN()
	}
	return float64(r.OK)
}

// blockCounter is the packet count of smtpguard's block rule, -1 without one.
func blockCounter(c *nftables.Conn) int64 {
	t := &nftables.Table{Name: sgTable, Family: nftables.TableFamilyINet}
	rules, err := c.GetRules(t, &nftables.Chain{Name: sgCheck, Table: t})
	if err != nil {
		return -1
	}
	for _, r := range rules {
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				return int64(ctr.Packets)
			}
		}
	}
	return -1
}

// flushWindow loops a blocked user's connects to port 25 while the client
// namespace's whole ruleset is flushed over netlink, flushes times, flushEvery
// apart, as "nft flush ruleset" by another process would. Flushing starts
// once the block rule's counter grows: the loop is running.
func (s *suite) flushWindow(flushes int) flushResult {
	s.b.Helper()
	f, err := os.Open(s.client.Path())
	if err != nil {
		s.b.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	type outcome struct {
		flushes int
		err     error
	}
	done := make(chan outcome, 1)
	go func() {
		c, err := nftables.New(nftables.WithNetNSFd(fd))
		if err != nil {
			done <- outcome{err: err}
			return
		}
		base := blockCounter(c)
		for deadline := time.Now().Add(5 * time.Second); blockCounter(c) <= base; {
			if time.Now().After(deadline) {
				done <- outcome{err: fmt.Errorf("the blocked connect loop did not show in the block rule's counter (still %d) within 5s", base)}
				return
			}
			time.Sleep(time.Millisecond)
		}
		n := 0
		for range flushes {
			c.FlushRuleset()
			if err := c.Flush(); err != nil {
				done <- outcome{n, fmt.Errorf("flush ruleset in %s: %w", s.client.Name, err)}
				return
			}
			n++
			time.Sleep(flushEvery) // the pace of the flushes, not a synchronisation
		}
		done <- outcome{flushes: n}
	}()
	window := time.Duration(flushes)*flushEvery + 2*time.Second // the loop outlasts the flushes
	r := s.connectLoad(s.blocked, 25, window, floodMax, false)
	o := <-done
	if o.err != nil {
		s.b.Fatal(o.err)
	}
	if o.flushes < flushes {
		s.b.Fatalf("%d of %d flushes ran during the connect loop", o.flushes, flushes)
	}
	return flushResult{helperResult: r, flushes: o.flushes}
}

// measureOwnedFlush is P5 under the owner flag: an in-process backend made
// Config.Owner holds the table (what the daemon does once it uses the option)
// while foreign flushes run; then it removes the table.
func (s *suite) measureOwnedFlush() flushResult {
	s.b.Helper()
	f, err := os.Open(s.client.Path())
	if err != nil {
		s.b.Fatal(err)
	}
	defer f.Close()
	b := nft.New(nft.Config{NetNSFD: int(f.Fd()), Owner: true})
	defer b.Close()
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	rs := policy.Ruleset{Mode: policy.ModeReject, Ports: []uint16{25, 465, 587}, AllowLocal: true,
		UIDs: []uint32{0, s.allowed.UID}}
	if err := b.Apply(ctx, rs); err != nil {
		s.b.Fatalf("apply an owned table in %s: %v", s.client.Name, err)
	}
	if !b.Owned() {
		return flushResult{note: " — not measured: this kernel cannot own tables (needs Linux 6.9)"}
	}
	r := s.flushWindow(s.p.flushRuns)
	r.owned = true
	if d, err := b.Verify(ctx, rs); err != nil || !d.InSync() {
		s.b.Fatalf("owned table after %d foreign flushes: %v %v; want in sync", r.flushes, d, err)
	}
	if err := b.Remove(ctx); err != nil {
		s.b.Fatal(err)
	}
	return r
}
