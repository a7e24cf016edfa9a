package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/store"
)

// What status and events say about a backend is the backend's own
// description, never a name the engine recognises.
func TestStatusAndEventsUseTheBackendsDescription(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	desc := enforce.Description{
		Covers:      "every process of cgroup /test",
		Limitations: []string{"seteuid-only processes keep their real uid"},
		Refusal:     "refused with EPERM",
	}
	f.backend.SetDescription(desc)
	must(t)(f.eng.Enable(ctx, admin, "auto"))

	st, err := f.eng.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(desc.Limitations, st.Limitations); diff != "" {
		t.Errorf("Status().Limitations (-want +got):\n%s", diff)
	}
	if st.Covers != desc.Covers {
		t.Errorf("Status().Covers = %q, want %q", st.Covers, desc.Covers)
	}

	now := time.Now()
	if err := f.eng.RecordEvents(ctx, []store.Event{{UID: 1002, User: "bob", Family: 4, Address: "192.0.2.9", Port: 25,
		Action: enforce.ActionBlocked, Count: 1, FirstSeen: now, LastSeen: now}}); err != nil {
		t.Fatal(err)
	}
	evs, err := f.eng.Events(ctx, store.EventFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("Events() = %d events, want 1", len(evs))
	}
	if want := "block rule (mode reject): refused with EPERM; "; !strings.HasPrefix(evs[0].BlockedBy, want) {
		t.Errorf("Events()[0].BlockedBy = %q, want it to start with %q", evs[0].BlockedBy, want)
	}
	if strings.Contains(evs[0].BlockedBy, "TCP reset") {
		t.Errorf("Events()[0].BlockedBy = %q names nft's refusal for another backend", evs[0].BlockedBy)
	}
}
