//go:build linux

package nft

import (
	"context"
	"testing"
)

// Present sees the table whatever it holds: an emptied one, or one someone
// else created under our name, still restricts or may, and must be reported.
func TestPrivilegedPresent(t *testing.T) {
	b, ns := nsBackend(t)
	ctx := context.Background()
	check := func(when string, want bool) {
		t.Helper()
		got, err := b.Present(ctx)
		if err != nil || got != want {
			t.Errorf("Present() %s = %v, %v; want %v", when, got, err, want)
		}
	}
	check("in a new namespace", false)
	ns.Exec(t, "nft", "add", "table", "inet", "other")
	check("with only someone else's table", false)
	mustApply(t, b, baseRuleset())
	check("after Apply", true)
	ns.Exec(t, "nft", "flush", "table", "inet", tableName)
	check("after the table was flushed", true)
	if err := b.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	check("after Remove", false)
	ns.Exec(t, "nft", "add", "table", "inet", tableName)
	check("with an empty table of our name", true)
}
