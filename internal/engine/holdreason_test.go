package engine

import "testing"

// TestHoldReasonIsOneLine: a hold's reason is shown on one line of status,
// the audit log and notifications, and printed to the administrator's
// terminal: control characters (a newline, an escape sequence given through
// the web UI or the API) are refused as bad input, printable text is kept.
func TestHoldReasonIsOneLine(t *testing.T) {
	f, _ := newHoldFixture(t)
	for _, reason := range []string{"spam\nuser bob held until released", "complaint \x1b[2J", "tab\there"} {
		if res, err := f.eng.Hold(t.Context(), testActor, HoldRequest{User: "alice", Reason: reason}); !IsValidation(err) {
			t.Errorf("Hold(alice, reason %q) = %+v, %v; want a validation error", reason, res, err)
		}
	}
	if holds, _ := f.eng.Holds(t.Context()); len(holds) != 0 {
		t.Fatalf("Holds() = %+v after refused reasons, want none", holds)
	}
	const ok = "complaint #4711 — «spam» from alice"
	if _, err := f.eng.Hold(t.Context(), testActor, HoldRequest{User: "alice", Reason: ok}); err != nil {
		t.Fatal(err)
	}
	if holds, _ := f.eng.Holds(t.Context()); len(holds) != 1 || holds[0].Reason != ok {
		t.Errorf("Holds() = %+v, want alice's hold with the reason %q", holds, ok)
	}
}
