package engine

import (
	"context"
	"database/sql"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// A policy stored by a build whose default was 25, 465, 587 keeps exactly
// that list after the upgrade that added 2525 to the default: enable, other
// changes and a reopen never slip 2525 in. Only a store holding no policy
// yet gets the new default.
func TestStoredPolicyKeepsItsPortsAfterTheDefaultGrew(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "usr/sbin/exim4")
	if p, _ := f.stored(t); !cmp.Equal(p.Ports, []uint16{25, 465, 587, 2525}) {
		t.Fatalf("fresh store's ports = %v, want the new default 25,465,587,2525", p.Ports)
	}
	must(t)(f.eng.Allow(ctx, admin, policy.KindUser, "alice"))
	// The row as the older build left it: its default ports, written out.
	f.reopen(t, func(db string) {
		conn, err := sql.Open("sqlite", db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Exec("UPDATE policy SET ports = '25,465,587' WHERE id = 1"); err != nil {
			t.Fatalf("write the older build's policy row: %v", err)
		}
	})
	legacy := []uint16{25, 465, 587}
	if p, _ := f.stored(t); !cmp.Equal(p.Ports, legacy) {
		t.Fatalf("stored ports after the upgrade = %v, want %v", p.Ports, legacy)
	}
	must(t)(f.eng.Enable(ctx, admin, "auto"))
	must(t)(f.eng.SetMode(ctx, admin, "log"))
	must(t)(f.eng.Allow(ctx, admin, policy.KindUser, "bob"))
	if rs := f.backend.Installed(); rs == nil || !cmp.Equal(rs.Ports, legacy) {
		t.Errorf("installed ports = %+v, want %v (the stored list, not the new default)", rs, legacy)
	}
	f.reopen(t, func(string) {})
	if p, _ := f.stored(t); !cmp.Equal(p.Ports, legacy) {
		t.Errorf("stored ports after changes and a reopen = %v, want %v", p.Ports, legacy)
	}
}
