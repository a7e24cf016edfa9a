package cli

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type heldJSON struct {
	User   string     `json:"user"`
	UID    uint32     `json:"uid"`
	Since  time.Time  `json:"since"`
	Until  *time.Time `json:"until"`
	Reason string     `json:"reason"`
}

func (h *harness) held() []heldJSON {
	h.t.Helper()
	var st struct {
		Held      []heldJSON `json:"held"`
		HoldAfter string     `json:"hold_after"`
		HoldFor   string     `json:"hold_for"`
	}
	out := h.ok("status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		h.t.Fatalf("status --json: %v", err)
	}
	if st.Held == nil {
		h.t.Fatalf("status --json has no \"held\" list: %s", out)
	}
	return st.Held
}

func TestHoldAndReleaseUser(t *testing.T) {
	h := newHarness(t)
	h.ok("enable")
	h.ok("allow", "user", "alice")
	if got := h.held(); len(got) != 0 {
		t.Fatalf("held before any hold = %+v", got)
	}
	out := h.ok("hold", "user", "alice", "--for", "2h", "--reason", "spam complaint")
	if !strings.Contains(out, "user alice (uid 1001) held until") {
		t.Errorf("hold user alice printed %q", out)
	}
	if slices.Contains(h.backend.Installed().UIDs, 1001) {
		t.Error("alice still allowed in the kernel while held")
	}
	got := h.held()
	if len(got) != 1 || got[0].User != "alice" || got[0].UID != 1001 || got[0].Reason != "spam complaint" ||
		got[0].Until == nil || got[0].Until.Sub(got[0].Since) != 2*time.Hour {
		t.Errorf("status --json held = %+v, want alice for 2h with the reason", got)
	}
	if text := h.ok("status"); !strings.Contains(text, "user alice (uid 1001) since") || !strings.Contains(text, "smtpguard release user alice") {
		t.Errorf("status does not show the hold with how to release it:\n%s", text)
	}
	var res struct {
		Changed bool   `json:"changed"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(h.ok("release", "user", "alice", "--json")), &res); err != nil || !res.Changed || res.Message != "user alice (uid 1001) released" {
		t.Errorf("release --json = %+v, %v", res, err)
	}
	if !slices.Contains(h.backend.Installed().UIDs, 1001) {
		t.Error("alice not allowed again after release")
	}
	if err := json.Unmarshal([]byte(h.ok("release", "user", "alice", "--json")), &res); err != nil || res.Changed {
		t.Errorf("release of a user not held = %+v, %v; want no change", res, err)
	}
	h.ok("hold", "user", "1002", "--for", "0")
	if got := h.held(); len(got) != 1 || got[0].User != "bob" || got[0].Until != nil {
		t.Errorf("hold --for 0 = %+v, want bob until released (until null)", got)
	}
}

func TestHoldBadInputExitsTwo(t *testing.T) {
	h := newHarness(t)
	h.ok("enable")
	for _, args := range [][]string{
		{"hold"},
		{"hold", "user"},
		{"hold", "user", "root"},
		{"hold", "user", "0"},
		{"hold", "user", "nosuch"},
		{"hold", "user", "alice", "--for", "soon"},
		{"hold", "user", "alice", "--for", "-1h"},
		{"release", "user", "nosuch"},
		{"set", "hold-after", "10"},
		{"set", "hold-after", "10/w"},
		{"set", "hold-for", "forever"},
	} {
		r := h.run(args...)
		if r.code != ExitUsage || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || r.stderr == "" {
			t.Errorf("smtpguard %s: exit %d, stderr %q; want exit 2 and one line", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	if got := h.held(); len(got) != 0 {
		t.Errorf("bad input held someone: %+v", got)
	}
}

func TestSetHoldAfterAndHoldFor(t *testing.T) {
	h := newHarness(t)
	h.ok("set", "hold-after", "10/m")
	h.ok("set", "hold-for", "0")
	var st struct {
		HoldAfter string `json:"hold_after"`
		HoldFor   string `json:"hold_for"`
	}
	json.Unmarshal([]byte(h.ok("status", "--json")), &st)
	if diff := cmp.Diff(struct{ A, F string }{"10/m", "until released"}, struct{ A, F string }{st.HoldAfter, st.HoldFor}); diff != "" {
		t.Errorf("hold settings in status --json (-want +got):\n%s", diff)
	}
	if text := h.ok("status"); !strings.Contains(text, "after 10/m refused or rate-limited attempts, until released") {
		t.Errorf("status does not show the automatic hold:\n%s", text)
	}
	h.ok("set", "hold-after", "off")
	if text := h.ok("status"); strings.Contains(text, "Automatic hold") {
		t.Errorf("status shows an automatic hold that is off:\n%s", text)
	}
}
