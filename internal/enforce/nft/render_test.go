//go:build linux

package nft

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current rendering")

func testRulesets() map[string]policy.Ruleset {
	return map[string]policy.Ruleset{
		"reject_default": {Mode: policy.ModeReject, Ports: []uint16{25, 465, 587}, AllowLocal: true, UIDs: []uint32{0, 101, 1001}, LogGroup: policy.DefaultLogGroup},
		"log_mode":       {Mode: policy.ModeLog, Ports: []uint16{25, 465, 587}, AllowLocal: true, UIDs: []uint32{0}, LogGroup: policy.DefaultLogGroup},
		"no_local":       {Mode: policy.ModeReject, Ports: []uint16{25, 2525}, AllowLocal: false, UIDs: []uint32{0, 38}, LogGroup: 7},
		"exceptions": {Mode: policy.ModeReject, Ports: []uint16{25, 465, 587}, AllowLocal: true, UIDs: []uint32{0}, LogGroup: policy.DefaultLogGroup,
			Exceptions: []policy.ExceptionRule{
				{UID: 1001, Dst: netip.MustParsePrefix("192.0.2.2/32"), Port: 587},
				{UID: 1001, Dst: netip.MustParsePrefix("198.51.100.0/24"), Port: 25},
				{UID: 1002, Dst: netip.MustParsePrefix("2001:db8::2/128"), Port: 587},
				{UID: 1002, Dst: netip.MustParsePrefix("2001:db8:1::/48"), Port: 465},
			}},
		"redirect": {Mode: policy.ModeRedirect, Ports: []uint16{25, 465, 587}, AllowLocal: true, UIDs: []uint32{0, 101}, LogGroup: policy.DefaultLogGroup},
	}
}

func TestRenderGolden(t *testing.T) {
	for name, rs := range testRulesets() {
		t.Run(name, func(t *testing.T) {
			got := render(rs)
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (regenerate with go test -update): %v", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("render(%s) (-want +got):\n%s", name, diff)
			}
		})
	}
}

// The rule order is the contract policy.Ruleset.Trace implements; keep them in
// step: the ports gate first, then local, then allowed uids, then the block.
func TestRuleOrderMatchesTracer(t *testing.T) {
	for name, rs := range testRulesets() {
		t.Run(name, func(t *testing.T) {
			specs := rules(rs, nil, nil)
			var order []string
			for _, r := range specs {
				switch {
				case strings.Contains(r.text, "@"+setPorts):
					order = append(order, "ports")
				case strings.Contains(r.text, "fib daddr type local"):
					order = append(order, "local")
				case strings.Contains(r.text, "@"+setUIDs):
					order = append(order, "uids")
				case strings.HasPrefix(r.text, "counter log"):
					order = append(order, "block")
				}
			}
			want := []string{"ports", "local", "local", "uids", "block"}
			if !rs.AllowLocal {
				want = []string{"ports", "uids", "block"}
			}
			if diff := cmp.Diff(want, order); diff != "" {
				t.Errorf("rule order (-want +got):\n%s", diff)
			}
			last := specs[len(specs)-1].text
			if rejects := strings.HasSuffix(last, "reject with tcp reset"); rejects != (rs.Mode == policy.ModeReject) {
				t.Errorf("block rule %q in mode %s: want a tcp reset only in reject mode", last, rs.Mode)
			}
			if redirects := strings.HasSuffix(last, " redirect"); redirects != (rs.Mode == policy.ModeRedirect) {
				t.Errorf("block rule %q in mode %s: want a redirect only in redirect mode", last, rs.Mode)
			}
		})
	}
}

func TestCommentsFingerprintRuleMeaning(t *testing.T) {
	rs := testRulesets()["reject_default"]
	logRS := rs
	logRS.Mode = policy.ModeLog
	a, b := rules(rs, nil, nil), rules(logRS, nil, nil)
	if a[len(a)-1].comment() == b[len(b)-1].comment() {
		t.Error("reject and log block rules share a comment; Verify could not tell them apart")
	}
	more := rs
	more.UIDs = append([]uint32{}, 0, 1, 2, 3)
	for i, r := range rules(more, nil, nil) {
		if r.comment() != a[i].comment() {
			t.Errorf("rule %d's fingerprint depends on set contents; uid changes would force full rebuilds", i)
		}
	}
}
