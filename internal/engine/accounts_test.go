package engine

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/store"
)

var cheap = store.Argon2Params{Memory: 64, Time: 1, Threads: 1}

func (f *fixture) auditOps(t *testing.T) []string {
	t.Helper()
	recs, err := f.eng.Audit(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, r := range recs {
		ops = append(ops, r.Operation+" "+r.Detail)
	}
	slices.Reverse(ops)
	return ops
}

// TestAccountOperationsAuditEveryChangeAndNoNoOp: each account and token
// operation writes its change and one audit record; one that changes nothing
// writes neither.
func TestAccountOperationsAuditEveryChangeAndNoNoOp(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.eng.cfg.Argon2 = cheap
	e := f.eng
	steps := []struct {
		name    string
		op      func() (Result, error)
		changed bool
	}{
		{"add admin", func() (Result, error) { return e.AddAccount(ctx, admin, "boss", store.RoleAdmin, "boss-password-1") }, true},
		{"add reseller", func() (Result, error) { return e.AddAccount(ctx, admin, "res1", store.RoleReseller, "res1-password-1") }, true},
		{"grant", func() (Result, error) { return e.Grant(ctx, admin, "res1", store.PrivSMTPRestrictions) }, true},
		{"grant again", func() (Result, error) { return e.Grant(ctx, admin, "res1", store.PrivSMTPRestrictions) }, false},
		{"own", func() (Result, error) { return e.SetOwned(ctx, admin, "res1", []string{"bob", "alice"}) }, true},
		{"own the same", func() (Result, error) { return e.SetOwned(ctx, admin, "res1", []string{"alice", "bob", "alice"}) }, false},
		{"revoke", func() (Result, error) { return e.RevokePrivilege(ctx, admin, "res1", store.PrivSMTPRestrictions) }, true},
		{"revoke again", func() (Result, error) { return e.RevokePrivilege(ctx, admin, "res1", store.PrivSMTPRestrictions) }, false},
		{"passwd", func() (Result, error) { return e.SetPassword(ctx, admin, "res1", "res1-password-2") }, true},
		{"token", func() (Result, error) {
			_, res, err := e.CreateToken(ctx, admin, "bot", store.RoleReseller, "res1")
			return res, err
		}, true},
		{"revoke token", func() (Result, error) { return e.RevokeToken(ctx, admin, "bot") }, true},
		{"unlock nothing", func() (Result, error) { return e.UnlockAccount(ctx, admin, "res1") }, false},
		{"delete", func() (Result, error) { return e.DeleteAccount(ctx, admin, "res1") }, true},
	}
	for _, st := range steps {
		res, err := st.op()
		if err != nil || res.Changed != st.changed || res.Message == "" {
			t.Errorf("%s = %+v, %v; want changed=%t with a message", st.name, res, err, st.changed)
		}
	}
	want := []string{
		"account add boss role admin", "account add res1 role reseller", "account grant res1 smtp-restrictions",
		"account own res1 bob alice", "account revoke res1 smtp-restrictions", "account passwd res1",
		"token create bot role reseller account res1", "token revoke bot", "account del res1",
	}
	if diff := cmp.Diff(want, f.auditOps(t)); diff != "" {
		t.Errorf("audit log (-want +got):\n%s", diff)
	}
}

// TestAccountOperationsRefuseBadInputAlike: one set of messages, bad input
// marked as such, nothing written.
func TestAccountOperationsRefuseBadInputAlike(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.eng.cfg.Argon2 = cheap
	e := f.eng
	must(t)(e.AddAccount(ctx, admin, "boss", store.RoleAdmin, "boss-password-1"))
	for _, tt := range []struct {
		name string
		op   func() error
		want string
	}{
		{"bad name", func() error {
			_, err := e.AddAccount(ctx, admin, "Bob Smith", store.RoleAdmin, "long-enough-1")
			return err
		}, `invalid account name "Bob Smith"`},
		{"bad role", func() error { _, err := e.AddAccount(ctx, admin, "bob", "root", "long-enough-1"); return err }, `unknown role "root"`},
		{"short password", func() error { _, err := e.AddAccount(ctx, admin, "bob", store.RoleAdmin, "short"); return err }, "too short"},
		{"duplicate", func() error { _, err := e.AddAccount(ctx, admin, "boss", store.RoleAdmin, "long-enough-1"); return err }, "already exists"},
		{"grant an admin", func() error { _, err := e.Grant(ctx, admin, "boss", store.PrivSMTPRestrictions); return err }, "holds every privilege"},
		{"unknown privilege", func() error { _, err := e.Grant(ctx, admin, "boss", "root"); return err }, "unknown privilege"},
		{"unknown system user", func() error { _, err := e.SetOwned(ctx, admin, "boss", []string{"mallory"}); return err }, `no such system user "mallory"`},
		{"admin owns", func() error { _, err := e.SetOwned(ctx, admin, "boss", []string{"alice"}); return err }, "only resellers own users"},
		{"reseller token without account", func() error { _, _, err := e.CreateToken(ctx, admin, "x", store.RoleReseller, ""); return err }, "--account"},
	} {
		err := tt.op()
		if !IsValidation(err) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s = %v, want a validation error containing %q", tt.name, err, tt.want)
		}
	}
	for _, op := range []func() error{
		func() error { _, err := e.DeleteAccount(ctx, admin, "ghost"); return err },
		func() error { _, err := e.SetPassword(ctx, admin, "ghost", "long-enough-1"); return err },
		func() error { _, err := e.RevokeToken(ctx, admin, "ghost"); return err },
	} {
		if err := op(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("operation on a missing account or token = %v, want store.ErrNotFound", err)
		}
	}
	if diff := cmp.Diff([]string{"account add boss role admin"}, f.auditOps(t)); diff != "" {
		t.Errorf("bad input was audited (-want +got):\n%s", diff)
	}
}

// TestStoreViewOnlyReads: what Engine.Store hands out has read methods only,
// so every write is an engine operation. A method added to store.View must be
// a read and be listed here.
func TestStoreViewOnlyReads(t *testing.T) {
	reads := []string{"Account", "Accounts", "Audit", "DNSCache", "Events", "HoldsRevision", "PasswordHash", "Policy", "Revision",
		"SchemaVersion", "SessionBySecret", "SignInLocks", "TokenBySecret", "Tokens"}
	typ := reflect.TypeOf(newFixture(t).eng.Store())
	var got []string
	for i := range typ.NumMethod() {
		got = append(got, typ.Method(i).Name)
	}
	if diff := cmp.Diff(reads, got); diff != "" {
		t.Errorf("methods of %s (-reads +got):\n%s", typ, diff)
	}
}
