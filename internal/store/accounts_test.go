package store

import (
	"database/sql"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// cheapArgon2 keeps tests fast; the parameters travel inside each hash.
var cheapArgon2 = Argon2Params{Memory: 64, Time: 1, Threads: 1}

func mustHash(t *testing.T, password string) string {
	t.Helper()
	h, err := HashPassword(password, cheapArgon2)
	if err != nil {
		t.Fatalf("HashPassword() = %v", err)
	}
	return h
}

func TestHashPasswordRoundTrip(t *testing.T) {
	h, err := HashPassword("correct horse battery staple", DefaultArgon2())
	if err != nil {
		t.Fatalf("HashPassword() = %v", err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Errorf("HashPassword() = %q, want PHC argon2id with the default parameters", h)
	}
	if strings.Contains(h, "horse") {
		t.Errorf("hash %q contains the password", h)
	}
	for _, tt := range []struct {
		password string
		want     bool
	}{
		{"correct horse battery staple", true},
		{"correct horse battery staplE", false},
		{"", false},
	} {
		got, err := VerifyPassword(h, tt.password)
		if err != nil || got != tt.want {
			t.Errorf("VerifyPassword(h, %q) = %t, %v, want %t, nil", tt.password, got, err, tt.want)
		}
	}
	h2, _ := HashPassword("correct horse battery staple", DefaultArgon2())
	if h2 == h {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
}

func TestVerifyPasswordRejectsMalformedHashes(t *testing.T) {
	for _, h := range []string{
		"",
		"plaintext",
		"$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1,x=2$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$c2hvcnQ",
	} {
		if ok, err := VerifyPassword(h, "x"); ok || err == nil {
			t.Errorf("VerifyPassword(%q) = %t, %v, want false and an error", h, ok, err)
		}
	}
}

func TestAccountsLifecycle(t *testing.T) {
	ctx := t.Context()
	s, _ := newTestStore(t)
	if err := s.CreateAccount(ctx, "root-admin", RoleAdmin, mustHash(t, "pw-admin-123"), testAt); err != nil {
		t.Fatalf("CreateAccount(admin) = %v", err)
	}
	if err := s.CreateAccount(ctx, "res1", RoleReseller, mustHash(t, "pw-res-123"), testAt); err != nil {
		t.Fatalf("CreateAccount(reseller) = %v", err)
	}
	if err := s.CreateAccount(ctx, "res1", RoleReseller, mustHash(t, "x"), testAt); !errors.Is(err, ErrExists) {
		t.Errorf("CreateAccount(duplicate) = %v, want ErrExists", err)
	}
	for _, tt := range []struct{ name, role, hash string }{
		{"Bad Name", RoleAdmin, mustHash(t, "x")},
		{"", RoleAdmin, mustHash(t, "x")},
		{"-x", RoleAdmin, mustHash(t, "x")},
		{"ok", "root", mustHash(t, "x")},
		{"ok", RoleAdmin, "plain password"},
	} {
		if err := s.CreateAccount(ctx, tt.name, tt.role, tt.hash, testAt); err == nil {
			t.Errorf("CreateAccount(%q, %q, %q) = nil, want an error", tt.name, tt.role, tt.hash)
		}
	}

	if changed, err := s.Grant(ctx, "res1", PrivSMTPRestrictions); err != nil || !changed {
		t.Errorf("Grant() = %t, %v, want true, nil", changed, err)
	}
	if changed, err := s.Grant(ctx, "res1", PrivSMTPRestrictions); err != nil || changed {
		t.Errorf("second Grant() = %t, %v, want false, nil", changed, err)
	}
	if _, err := s.Grant(ctx, "res1", "root-shell"); err == nil {
		t.Error("Grant(unknown privilege) = nil, want an error")
	}
	if _, err := s.Grant(ctx, "root-admin", PrivSMTPRestrictions); err == nil {
		t.Error("Grant(admin) = nil, want an error: admins hold every privilege")
	}
	if _, err := s.Grant(ctx, "nobody", PrivSMTPRestrictions); !errors.Is(err, ErrNotFound) {
		t.Errorf("Grant(missing account) = %v, want ErrNotFound", err)
	}
	if err := s.SetOwnedUsers(ctx, "res1", []string{"carol", "alice", "carol"}); err != nil {
		t.Fatalf("SetOwnedUsers() = %v", err)
	}
	if err := s.SetOwnedUsers(ctx, "root-admin", []string{"alice"}); err == nil {
		t.Error("SetOwnedUsers(admin) = nil, want an error")
	}

	got, err := s.Accounts(ctx)
	if err != nil {
		t.Fatalf("Accounts() = %v", err)
	}
	want := []Account{
		{Name: "res1", Role: RoleReseller, Privileges: []string{PrivSMTPRestrictions}, Users: []string{"alice", "carol"}, CreatedAt: testAt, PasswordAt: testAt},
		{Name: "root-admin", Role: RoleAdmin, Privileges: []string{}, Users: []string{}, CreatedAt: testAt, PasswordAt: testAt},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("Accounts() (-want +got):\n%s", diff)
	}
	if !got[0].Has(PrivSMTPRestrictions) || !got[1].Has(PrivSMTPRestrictions) {
		t.Error("Has(smtp-restrictions) is false for a granted reseller or an admin")
	}

	if changed, err := s.RevokePrivilege(ctx, "res1", PrivSMTPRestrictions); err != nil || !changed {
		t.Errorf("RevokePrivilege() = %t, %v, want true, nil", changed, err)
	}
	a, err := s.Account(ctx, "res1")
	if err != nil || a.Has(PrivSMTPRestrictions) {
		t.Errorf("after revoke: Account() = %+v, %v, want no privilege", a, err)
	}

	// A new password signs the account out everywhere.
	secret := NewSecret("sgs_")
	if err := s.CreateSession(ctx, secret, Session{Account: "res1", CreatedAt: testAt, ExpiresAt: testAt.Add(time.Hour), LastSeen: testAt}); err != nil {
		t.Fatalf("CreateSession() = %v", err)
	}
	later := testAt.Add(time.Minute)
	if err := s.SetPassword(ctx, "res1", mustHash(t, "new-password-1"), later); err != nil {
		t.Fatalf("SetPassword() = %v", err)
	}
	if _, err := s.SessionBySecret(ctx, secret); !errors.Is(err, ErrNotFound) {
		t.Errorf("session after a password change: %v, want ErrNotFound", err)
	}
	h, err := s.PasswordHash(ctx, "res1")
	if ok, _ := VerifyPassword(h, "new-password-1"); err != nil || !ok {
		t.Errorf("the new password does not verify (%v)", err)
	}
	if err := s.SetPassword(ctx, "nobody", mustHash(t, "x"), later); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetPassword(missing) = %v, want ErrNotFound", err)
	}

	// Deleting an account takes its sessions, privileges, users and tokens.
	if err := s.CreateSession(ctx, secret, Session{Account: "res1", CreatedAt: testAt, ExpiresAt: testAt.Add(time.Hour), LastSeen: testAt}); err != nil {
		t.Fatalf("CreateSession() = %v", err)
	}
	tok := NewSecret("sgt_")
	if err := s.CreateToken(ctx, Token{Name: "res1-script", Role: RoleReseller, Account: "res1", CreatedAt: testAt}, tok); err != nil {
		t.Fatalf("CreateToken() = %v", err)
	}
	if err := s.DeleteAccount(ctx, "res1"); err != nil {
		t.Fatalf("DeleteAccount() = %v", err)
	}
	if _, err := s.SessionBySecret(ctx, secret); !errors.Is(err, ErrNotFound) {
		t.Errorf("session of a deleted account: %v, want ErrNotFound", err)
	}
	if _, err := s.TokenBySecret(ctx, tok); !errors.Is(err, ErrNotFound) {
		t.Errorf("token of a deleted account: %v, want ErrNotFound", err)
	}
	if err := s.DeleteAccount(ctx, "res1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteAccount(again) = %v, want ErrNotFound", err)
	}
	if err := s.CreateAccount(ctx, "res1", RoleReseller, mustHash(t, "x"), later); err != nil {
		t.Fatalf("re-create: %v", err)
	}
	if a, _ := s.Account(ctx, "res1"); len(a.Privileges) != 0 || len(a.Users) != 0 {
		t.Errorf("a re-created account inherited %+v", a)
	}
}

func TestSessions(t *testing.T) {
	ctx := t.Context()
	s, _ := newTestStore(t)
	if err := s.CreateAccount(ctx, "admin", RoleAdmin, mustHash(t, "x"), testAt); err != nil {
		t.Fatal(err)
	}
	secret := NewSecret("sgs_")
	want := Session{Account: "admin", CreatedAt: testAt, ExpiresAt: testAt.Add(12 * time.Hour), LastSeen: testAt, Remote: "192.0.2.7"}
	if err := s.CreateSession(ctx, secret, want); err != nil {
		t.Fatalf("CreateSession() = %v", err)
	}
	got, err := s.SessionBySecret(ctx, secret)
	if err != nil || !got.ExpiresAt.Equal(want.ExpiresAt) || got.Account != "admin" || got.Remote != want.Remote {
		t.Errorf("SessionBySecret() = %+v, %v, want %+v", got, err, want)
	}
	if _, err := s.SessionBySecret(ctx, secret+"x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SessionBySecret(wrong) = %v, want ErrNotFound", err)
	}
	if msg, err := s.TakeFlash(ctx, secret); msg != "" || err != nil {
		t.Errorf("TakeFlash(fresh) = %q, %v", msg, err)
	}
	if err := s.SetFlash(ctx, secret, "user alice allowed"); err != nil {
		t.Fatal(err)
	}
	if msg, err := s.TakeFlash(ctx, secret); msg != "user alice allowed" || err != nil {
		t.Errorf("TakeFlash() = %q, %v", msg, err)
	}
	if msg, _ := s.TakeFlash(ctx, secret); msg != "" {
		t.Errorf("TakeFlash(again) = %q, want it consumed", msg)
	}
	if err := s.TouchSession(ctx, secret, testAt.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Idle since testAt+1h; a cutoff before that keeps it, one after drops it.
	if n, err := s.PruneSessions(ctx, testAt.Add(2*time.Hour), testAt.Add(30*time.Minute)); n != 0 || err != nil {
		t.Errorf("PruneSessions(active) = %d, %v, want 0", n, err)
	}
	if n, err := s.PruneSessions(ctx, testAt.Add(2*time.Hour), testAt.Add(90*time.Minute)); n != 1 || err != nil {
		t.Errorf("PruneSessions(idle) = %d, %v, want 1", n, err)
	}
	if err := s.DeleteSession(ctx, secret); err != nil {
		t.Errorf("DeleteSession(missing) = %v, want nil", err)
	}
}

func TestSecretsAreStoredHashed(t *testing.T) {
	ctx := t.Context()
	s, path := newTestStore(t)
	if err := s.CreateAccount(ctx, "admin", RoleAdmin, mustHash(t, "hunter2-is-weak"), testAt); err != nil {
		t.Fatal(err)
	}
	session, token := NewSecret("sgs_"), NewSecret("sgt_")
	if !strings.HasPrefix(token, "sgt_") || len(token) < 40 || NewSecret("sgt_") == token {
		t.Errorf("NewSecret() = %q: want a prefix and 256 fresh random bits", token)
	}
	if err := s.CreateSession(ctx, session, Session{Account: "admin", CreatedAt: testAt, ExpiresAt: testAt.Add(time.Hour), LastSeen: testAt}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, Token{Name: "deploy", Role: RoleAdmin, CreatedAt: testAt}, token); err != nil {
		t.Fatal(err)
	}
	got, err := s.TokenBySecret(ctx, token)
	if err != nil || got.Name != "deploy" || got.Role != RoleAdmin || got.LastUsed != nil {
		t.Errorf("TokenBySecret() = %+v, %v", got, err)
	}
	if err := s.TouchToken(ctx, "deploy", testAt.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.TokenBySecret(ctx, token); got.LastUsed == nil || !got.LastUsed.Equal(testAt.Add(time.Minute)) {
		t.Errorf("LastUsed after TouchToken = %v", got.LastUsed)
	}
	// Read every byte SQLite wrote: no secret may appear anywhere.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal"} {
		data, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, secret := range []string{session, token, "hunter2-is-weak"} {
			if strings.Contains(string(data), secret) {
				t.Errorf("%s contains a secret in clear", f)
			}
		}
		if f == path && !strings.Contains(string(data), HashSecret(token)) {
			t.Errorf("%s lacks the token's hash: is it stored at all?", f)
		}
	}
}

func TestTokenRules(t *testing.T) {
	ctx := t.Context()
	s, _ := newTestStore(t)
	for _, a := range []struct{ name, role string }{{"admin", RoleAdmin}, {"res", RoleReseller}} {
		if err := s.CreateAccount(ctx, a.name, a.role, mustHash(t, "x"), testAt); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name    string
		tok     Token
		wantErr string
	}{
		{"admin token", Token{Name: "ci", Role: RoleAdmin}, ""},
		{"admin token for admin", Token{Name: "ci2", Role: RoleAdmin, Account: "admin"}, ""},
		{"reseller token for reseller", Token{Name: "res-bot", Role: RoleReseller, Account: "res"}, ""},
		{"duplicate", Token{Name: "ci", Role: RoleAdmin}, "already exists"},
		{"reseller without account", Token{Name: "r", Role: RoleReseller}, "--account"},
		{"role mismatch", Token{Name: "r", Role: RoleAdmin, Account: "res"}, "must have role reseller"},
		{"missing account", Token{Name: "r", Role: RoleAdmin, Account: "ghost"}, "not found"},
		{"bad name", Token{Name: "CI token", Role: RoleAdmin}, "invalid token name"},
		{"bad role", Token{Name: "r", Role: "root"}, "unknown role"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CreateToken(ctx, tt.tok, NewSecret("sgt_"))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("CreateToken(%+v) = %v, want %q", tt.tok, err, tt.wantErr)
			}
		})
	}
	if err := s.CreateToken(ctx, Token{Name: "short", Role: RoleAdmin}, "abc"); err == nil {
		t.Error("CreateToken(short secret) = nil, want an error")
	}
	toks, err := s.Tokens(ctx)
	if err != nil || len(toks) != 3 {
		t.Fatalf("Tokens() = %+v, %v, want 3", toks, err)
	}
	if err := s.DeleteToken(ctx, "ci"); err != nil {
		t.Errorf("DeleteToken() = %v", err)
	}
	if err := s.DeleteToken(ctx, "ci"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteToken(again) = %v, want ErrNotFound", err)
	}
}

func TestEventsOnlyUsers(t *testing.T) {
	ctx := t.Context()
	s, _ := newTestStore(t)
	evs := []Event{
		{UID: 1001, User: "alice", Family: 4, Address: "192.0.2.1", Port: 25, Action: "blocked", Count: 3, FirstSeen: testAt, LastSeen: testAt},
		{UID: 1002, User: "bob", Family: 4, Address: "192.0.2.2", Port: 25, Action: "blocked", Count: 1, FirstSeen: testAt, LastSeen: testAt},
		{UID: 4242, User: "", Family: 6, Address: "2001:db8::1", Port: 587, Action: "blocked", Count: 1, FirstSeen: testAt, LastSeen: testAt},
	}
	if err := s.RecordEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		f    EventFilter
		want []string
	}{
		{"no filter", EventFilter{}, []string{"", "alice", "bob"}},
		{"users ignored without OnlyUsers", EventFilter{Users: []string{"alice"}}, []string{"", "alice", "bob"}},
		{"one user", EventFilter{OnlyUsers: true, Users: []string{"alice"}}, []string{"alice"}},
		{"two users", EventFilter{OnlyUsers: true, Users: []string{"bob", "alice", "zed"}}, []string{"alice", "bob"}},
		{"owns nobody", EventFilter{OnlyUsers: true}, []string{}},
		{"quote in name", EventFilter{OnlyUsers: true, Users: []string{`al"ice`, "alice' OR 1=1 --"}}, []string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Events(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			users := []string{}
			for _, e := range got {
				users = append(users, e.User)
			}
			slices.Sort(users)
			if diff := cmp.Diff(tt.want, users); diff != "" {
				t.Errorf("Events(%+v) users (-want +got):\n%s", tt.f, diff)
			}
		})
	}
}

func TestUnmatchableHashCostsARealCheck(t *testing.T) {
	h := UnmatchableHash(DefaultArgon2())
	real, _ := HashPassword("x", DefaultArgon2())
	if h[:strings.LastIndexByte(h[:len(h)-44], '$')] != real[:strings.LastIndexByte(real[:len(real)-44], '$')] {
		t.Errorf("UnmatchableHash() = %q; want the parameters of %q", h, real)
	}
	for _, pw := range []string{"", "x", "password"} {
		ok, err := VerifyPassword(h, pw)
		if err != nil || ok {
			t.Errorf("VerifyPassword(unmatchable, %q) = %t, %v; want false, nil (a real argon2 check)", pw, ok, err)
		}
	}
}
