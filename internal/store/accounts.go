package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Roles of web accounts and API tokens.
const (
	RoleAdmin    = "admin"    // everything
	RoleReseller = "reseller" // only what an administrator granted
)

// PrivSMTPRestrictions lets a reseller see the SMTP Restrictions status, enable
// and disable it, and see blocked attempts of the system users they own.
const PrivSMTPRestrictions = "smtp-restrictions"

// Privileges lists the privileges an administrator can grant a reseller.
func Privileges() []string { return []string{PrivSMTPRestrictions} }

// ErrNotFound is returned (wrapped) when an account, session or token does
// not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned (wrapped) when creating what already exists.
var ErrExists = errors.New("already exists")

// ErrInvalid marks errors caused by the caller's input (a bad name, role or
// password), as opposed to failures of the database.
var ErrInvalid = errors.New("invalid input")

type inputError struct{ error }

func (e inputError) Is(target error) bool { return target == ErrInvalid }
func (e inputError) Unwrap() error        { return e.error }

func invalidf(format string, args ...any) error { return inputError{fmt.Errorf(format, args...)} }

// Account is a web account, without its password hash.
type Account struct {
	Name       string    `json:"name"`
	Role       string    `json:"role"`
	Privileges []string  `json:"privileges"` // sorted; admins implicitly have all
	Users      []string  `json:"users"`      // system users a reseller owns, sorted
	CreatedAt  time.Time `json:"created_at"`
	PasswordAt time.Time `json:"password_changed_at"`
}

// Has reports whether the account holds a privilege; administrators hold all.
func (a Account) Has(priv string) bool {
	return a.Role == RoleAdmin || slices.Contains(a.Privileges, priv)
}

// CheckName validates an account or token name: 1-64 characters of lowercase
// letters, digits, '.', '_' and '-', starting with a letter or digit.
func CheckName(what, name string) error {
	if name == "" {
		return invalidf("empty %s name", what)
	}
	if len(name) > 64 {
		return invalidf("%s name %q is longer than 64 characters", what, name)
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case (r == '.' || r == '_' || r == '-') && i > 0:
		default:
			return invalidf("invalid %s name %q: use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit", what, name)
		}
	}
	return nil
}

// MinPasswordLen is the shortest password an account may have.
const MinPasswordLen = 10

// CheckPassword refuses passwords too short to resist guessing, or too long
// to be anything but a mistake.
func CheckPassword(pw string) error {
	switch {
	case len([]rune(pw)) < MinPasswordLen:
		return invalidf("the password is too short: use at least %d characters", MinPasswordLen)
	case len(pw) > 1024:
		return invalidf("the password is longer than 1024 bytes")
	}
	return nil
}

// ParseRole checks a role name.
func ParseRole(s string) (string, error) {
	switch s {
	case RoleAdmin, RoleReseller:
		return s, nil
	}
	return "", invalidf("unknown role %q: use admin or reseller", s)
}

// ParsePrivilege checks a privilege name.
func ParsePrivilege(s string) (string, error) {
	if slices.Contains(Privileges(), s) {
		return s, nil
	}
	return "", invalidf("unknown privilege %q: use %s", s, strings.Join(Privileges(), ", "))
}

// CreateAccount adds an account with an already hashed password (HashPassword).
func (t *Tx) CreateAccount(ctx context.Context, name, role, passwordHash string, at time.Time) error {
	if err := CheckName("account", name); err != nil {
		return err
	}
	if _, err := ParseRole(role); err != nil {
		return err
	}
	if !strings.HasPrefix(passwordHash, "$argon2id$") {
		return errors.New("create account: the password must be hashed with HashPassword")
	}
	_, err := t.tx.ExecContext(ctx, "INSERT INTO accounts (name, role, password_hash, created_at, password_at) VALUES (?, ?, ?, ?, ?)",
		name, role, passwordHash, at.UnixMilli(), at.UnixMilli())
	if isConstraint(err) {
		return fmt.Errorf("account %q: %w", name, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create account %q: %w", name, err)
	}
	return nil
}

// SetPassword replaces an account's password hash and signs the account out
// everywhere.
func (t *Tx) SetPassword(ctx context.Context, name, passwordHash string, at time.Time) error {
	if !strings.HasPrefix(passwordHash, "$argon2id$") {
		return errors.New("set password: the password must be hashed with HashPassword")
	}
	res, err := t.tx.ExecContext(ctx, "UPDATE accounts SET password_hash = ?, password_at = ? WHERE name = ?", passwordHash, at.UnixMilli(), name)
	if err != nil {
		return fmt.Errorf("set password of %q: %w", name, err)
	}
	if err := mustAffect(res, "account", name); err != nil {
		return err
	}
	if _, err := t.tx.ExecContext(ctx, "DELETE FROM sessions WHERE account = ?", name); err != nil {
		return fmt.Errorf("sign %q out: %w", name, err)
	}
	return nil
}

// DeleteAccount removes an account with its sessions, privileges, owned users
// and the API tokens tied to it.
func (t *Tx) DeleteAccount(ctx context.Context, name string) error {
	res, err := t.tx.ExecContext(ctx, "DELETE FROM accounts WHERE name = ?", name)
	if err != nil {
		return fmt.Errorf("delete account %q: %w", name, err)
	}
	return mustAffect(res, "account", name)
}

// Account returns one account.
func (s *Store) Account(ctx context.Context, name string) (Account, error) {
	return oneAccount(ctx, s.db, name)
}

// Account reads one account inside the transaction.
func (t *Tx) Account(ctx context.Context, name string) (Account, error) {
	return oneAccount(ctx, t.tx, name)
}

func oneAccount(ctx context.Context, q querier, name string) (Account, error) {
	if name == "" {
		return Account{}, fmt.Errorf("account %q: %w", name, ErrNotFound)
	}
	accts, err := readAccounts(ctx, q, name)
	if err != nil {
		return Account{}, err
	}
	if len(accts) == 0 {
		return Account{}, fmt.Errorf("account %q: %w", name, ErrNotFound)
	}
	return accts[0], nil
}

// Accounts returns every account, by name.
func (s *Store) Accounts(ctx context.Context) ([]Account, error) {
	return readAccounts(ctx, s.db, "")
}

// readAccounts reads one account (name) or all (""), with privileges and users.
func readAccounts(ctx context.Context, q querier, name string) ([]Account, error) {
	rows, err := q.QueryContext(ctx, "SELECT name, role, created_at, password_at FROM accounts WHERE ? = '' OR name = ? ORDER BY name", name, name)
	if err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	defer rows.Close()
	var out []Account
	index := map[string]int{}
	for rows.Next() {
		var a Account
		var created, pw int64
		if err := rows.Scan(&a.Name, &a.Role, &created, &pw); err != nil {
			return nil, fmt.Errorf("read accounts: %w", err)
		}
		a.CreatedAt, a.PasswordAt = time.UnixMilli(created), time.UnixMilli(pw)
		a.Privileges, a.Users = []string{}, []string{}
		index[a.Name] = len(out)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	rows.Close()
	for _, sub := range []struct {
		query string
		field func(a *Account) *[]string
	}{
		{"SELECT account, privilege FROM account_privileges WHERE ? = '' OR account = ? ORDER BY privilege", func(a *Account) *[]string { return &a.Privileges }},
		{"SELECT account, user FROM account_users WHERE ? = '' OR account = ? ORDER BY user", func(a *Account) *[]string { return &a.Users }},
	} {
		rows, err := q.QueryContext(ctx, sub.query, name, name)
		if err != nil {
			return nil, fmt.Errorf("read accounts: %w", err)
		}
		for rows.Next() {
			var acct, v string
			if err := rows.Scan(&acct, &v); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read accounts: %w", err)
			}
			if i, ok := index[acct]; ok {
				f := sub.field(&out[i])
				*f = append(*f, v)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("read accounts: %w", err)
		}
	}
	return out, nil
}

// PasswordHash returns an account's password hash, for signing in.
func (s *Store) PasswordHash(ctx context.Context, name string) (string, error) {
	var h string
	err := s.db.QueryRowContext(ctx, "SELECT password_hash FROM accounts WHERE name = ?", name).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("account %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read account %q: %w", name, err)
	}
	return h, nil
}

// Grant gives a reseller a privilege and reports whether it was new.
// Administrators hold every privilege already, so granting them one is an error.
func (t *Tx) Grant(ctx context.Context, name, priv string) (bool, error) {
	if _, err := ParsePrivilege(priv); err != nil {
		return false, err
	}
	a, err := t.Account(ctx, name)
	if err != nil {
		return false, err
	}
	if a.Role == RoleAdmin {
		return false, invalidf("account %q is an admin and holds every privilege already", name)
	}
	res, err := t.tx.ExecContext(ctx, "INSERT INTO account_privileges (account, privilege) VALUES (?, ?) ON CONFLICT DO NOTHING", name, priv)
	if err != nil {
		return false, fmt.Errorf("grant %s to %q: %w", priv, name, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// RevokePrivilege withdraws a privilege and reports whether it was held.
func (t *Tx) RevokePrivilege(ctx context.Context, name, priv string) (bool, error) {
	if _, err := ParsePrivilege(priv); err != nil {
		return false, err
	}
	a, err := t.Account(ctx, name)
	if err != nil {
		return false, err
	}
	if a.Role == RoleAdmin {
		return false, invalidf("account %q is an admin: admins hold every privilege (delete the account instead)", name)
	}
	res, err := t.tx.ExecContext(ctx, "DELETE FROM account_privileges WHERE account = ? AND privilege = ?", name, priv)
	if err != nil {
		return false, fmt.Errorf("revoke %s from %q: %w", priv, name, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// SetOwnedUsers replaces the system users a reseller owns and reports whether
// the set changed. The caller checks that the users exist.
func (t *Tx) SetOwnedUsers(ctx context.Context, name string, users []string) (bool, error) {
	a, err := t.Account(ctx, name)
	if err != nil {
		return false, err
	}
	if a.Role != RoleReseller {
		return false, invalidf("account %q is an admin and sees every user already; only resellers own users", name)
	}
	want := slices.Clone(users)
	slices.Sort(want)
	want = slices.Compact(want)
	if slices.Equal(want, a.Users) {
		return false, nil
	}
	if _, err := t.tx.ExecContext(ctx, "DELETE FROM account_users WHERE account = ?", name); err != nil {
		return false, fmt.Errorf("set users of %q: %w", name, err)
	}
	for _, u := range want {
		if _, err := t.tx.ExecContext(ctx, "INSERT INTO account_users (account, user) VALUES (?, ?)", name, u); err != nil {
			return false, fmt.Errorf("set users of %q: %w", name, err)
		}
	}
	return true, nil
}

// Session is a signed-in browser.
type Session struct {
	Account   string
	CreatedAt time.Time
	ExpiresAt time.Time // absolute expiry
	LastSeen  time.Time // for the idle timeout
	Remote    string
}

// CreateSession stores a session under the hash of its secret (the cookie's
// value).
func (s *Store) CreateSession(ctx context.Context, secret string, sess Session) error {
	return createSession(ctx, s.db, secret, sess)
}

// CreateSession stores a session inside the transaction.
func (t *Tx) CreateSession(ctx context.Context, secret string, sess Session) error {
	return createSession(ctx, t.tx, secret, sess)
}

func createSession(ctx context.Context, q querier, secret string, sess Session) error {
	_, err := q.ExecContext(ctx, `INSERT INTO sessions (secret_hash, account, created_at, expires_at, last_seen, remote)
		VALUES (?, ?, ?, ?, ?, ?)`, HashSecret(secret), sess.Account, sess.CreatedAt.UnixMilli(), sess.ExpiresAt.UnixMilli(),
		sess.LastSeen.UnixMilli(), sess.Remote)
	if err != nil {
		return fmt.Errorf("create session for %q: %w", sess.Account, err)
	}
	return nil
}

// SessionBySecret returns the session a cookie's secret designates, expired
// or not: the caller decides.
func (s *Store) SessionBySecret(ctx context.Context, secret string) (Session, error) {
	var sess Session
	var created, expires, seen int64
	err := s.db.QueryRowContext(ctx, "SELECT account, created_at, expires_at, last_seen, remote FROM sessions WHERE secret_hash = ?",
		HashSecret(secret)).Scan(&sess.Account, &created, &expires, &seen, &sess.Remote)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, fmt.Errorf("session: %w", ErrNotFound)
	}
	if err != nil {
		return Session{}, fmt.Errorf("read session: %w", err)
	}
	sess.CreatedAt, sess.ExpiresAt, sess.LastSeen = time.UnixMilli(created), time.UnixMilli(expires), time.UnixMilli(seen)
	return sess, nil
}

// TouchSession records activity for the idle timeout.
func (s *Store) TouchSession(ctx context.Context, secret string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, "UPDATE sessions SET last_seen = ? WHERE secret_hash = ?", at.UnixMilli(), HashSecret(secret)); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// DeleteSession signs a session out; deleting a missing one is success.
func (s *Store) DeleteSession(ctx context.Context, secret string) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM sessions WHERE secret_hash = ?", HashSecret(secret)); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// PruneSessions deletes sessions that expired before the cutoff or were idle
// since before idleCutoff, and returns how many went.
func (s *Store) PruneSessions(ctx context.Context, now, idleCutoff time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM sessions WHERE expires_at <= ? OR last_seen < ?", now.UnixMilli(), idleCutoff.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune sessions: %w", err)
	}
	return res.RowsAffected()
}

// SetFlash leaves one message for the session's next page.
func (s *Store) SetFlash(ctx context.Context, secret, msg string) error {
	if _, err := s.db.ExecContext(ctx, "UPDATE sessions SET flash = ? WHERE secret_hash = ?", msg, HashSecret(secret)); err != nil {
		return fmt.Errorf("set flash: %w", err)
	}
	return nil
}

// TakeFlash returns and clears the session's message.
func (s *Store) TakeFlash(ctx context.Context, secret string) (string, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("take flash: %w", err)
	}
	defer tx.Rollback()
	var msg string
	err = tx.QueryRowContext(ctx, "SELECT flash FROM sessions WHERE secret_hash = ?", HashSecret(secret)).Scan(&msg)
	if errors.Is(err, sql.ErrNoRows) || err == nil && msg == "" {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("take flash: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE sessions SET flash = '' WHERE secret_hash = ?", HashSecret(secret)); err != nil {
		return "", fmt.Errorf("take flash: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("take flash: %w", err)
	}
	return msg, nil
}

// Token is an API token, without its secret.
type Token struct {
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Account   string     `json:"account,omitempty"` // "" when not tied to an account
	CreatedAt time.Time  `json:"created_at"`
	LastUsed  *time.Time `json:"last_used,omitempty"`
}

// CreateToken stores a token under the hash of its secret. A token tied to an
// account must have the account's role; a reseller token must be tied to a
// reseller account, whose privileges and users it acts with.
func (t *Tx) CreateToken(ctx context.Context, tok Token, secret string) error {
	if err := CheckName("token", tok.Name); err != nil {
		return err
	}
	if _, err := ParseRole(tok.Role); err != nil {
		return err
	}
	if len(secret) < 32 {
		return errors.New("create token: the secret is too short; use NewSecret")
	}
	var account any
	if tok.Account != "" {
		a, err := t.Account(ctx, tok.Account)
		if err != nil {
			return err
		}
		if a.Role != tok.Role {
			return invalidf("account %q is a %s: a token tied to it must have role %s", a.Name, a.Role, a.Role)
		}
		account = tok.Account
	} else if tok.Role == RoleReseller {
		return invalidf("a reseller token acts for a reseller account: name it with --account")
	}
	_, err := t.tx.ExecContext(ctx, "INSERT INTO api_tokens (name, role, account, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)",
		tok.Name, tok.Role, account, HashSecret(secret), tok.CreatedAt.UnixMilli())
	if isConstraint(err) {
		return fmt.Errorf("token %q: %w", tok.Name, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create token %q: %w", tok.Name, err)
	}
	return nil
}

// Tokens returns every API token, by name.
func (s *Store) Tokens(ctx context.Context) ([]Token, error) {
	return s.tokens(ctx, "SELECT name, role, coalesce(account, ''), created_at, last_used FROM api_tokens ORDER BY name")
}

// TokenBySecret returns the token whose secret this is.
func (s *Store) TokenBySecret(ctx context.Context, secret string) (Token, error) {
	ts, err := s.tokens(ctx, "SELECT name, role, coalesce(account, ''), created_at, last_used FROM api_tokens WHERE secret_hash = ?", HashSecret(secret))
	if err != nil {
		return Token{}, err
	}
	if len(ts) == 0 {
		return Token{}, fmt.Errorf("token: %w", ErrNotFound)
	}
	return ts[0], nil
}

func (s *Store) tokens(ctx context.Context, query string, args ...any) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var t Token
		var created, used int64
		if err := rows.Scan(&t.Name, &t.Role, &t.Account, &created, &used); err != nil {
			return nil, fmt.Errorf("read tokens: %w", err)
		}
		t.CreatedAt = time.UnixMilli(created)
		if used > 0 {
			u := time.UnixMilli(used)
			t.LastUsed = &u
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	return out, nil
}

// TouchToken records a token's use.
func (s *Store) TouchToken(ctx context.Context, name string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, "UPDATE api_tokens SET last_used = ? WHERE name = ?", at.UnixMilli(), name); err != nil {
		return fmt.Errorf("touch token %q: %w", name, err)
	}
	return nil
}

// DeleteToken revokes a token.
func (t *Tx) DeleteToken(ctx context.Context, name string) error {
	res, err := t.tx.ExecContext(ctx, "DELETE FROM api_tokens WHERE name = ?", name)
	if err != nil {
		return fmt.Errorf("revoke token %q: %w", name, err)
	}
	return mustAffect(res, "token", name)
}

// NewSecret returns a fresh random secret (256 bits) for a session cookie or
// an API token, with a prefix that tells them apart in logs and leak scanners.
func NewSecret(prefix string) string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// HashSecret is how session and token secrets are stored: they are 256-bit
// random values, so a fast hash is enough to make a database copy useless
// for signing in, and it lets the secret be looked up by an index.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Argon2Params are the cost parameters of a password hash.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// DefaultArgon2 follows RFC 9106's second recommended option (64 MiB, 3
// passes, 4 lanes): about 0.1 s per sign-in on a current server.
func DefaultArgon2() Argon2Params { return Argon2Params{Memory: 64 * 1024, Time: 3, Threads: 4} }

const (
	argonSaltLen = 16
	argonKeyLen  = 32
)

// HashPassword hashes a password with argon2id and a random salt, in PHC
// string format, which records the parameters so they can change later.
func HashPassword(password string, p Argon2Params) (string, error) {
	if p.Memory < 8*uint32(p.Threads) || p.Time < 1 || p.Threads < 1 {
		return "", fmt.Errorf("argon2 parameters %+v are out of range", p)
	}
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// UnmatchableHash is a hash in HashPassword's format, with p's cost, that no
// password matches: verifying against it when an account does not exist costs
// as much as a real check, so timing does not tell which names exist. Making
// it computes nothing, so it does not hold p.Memory for a server's lifetime.
func UnmatchableHash(p Argon2Params) string {
	salt, key := make([]byte, argonSaltLen), make([]byte, argonKeyLen)
	rand.Read(salt)
	rand.Read(key)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// VerifyPassword reports whether password matches an encoded hash, comparing
// in constant time.
func VerifyPassword(encoded, password string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return false, errors.New("password hash is not argon2id in PHC format")
	}
	var p Argon2Params
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return false, fmt.Errorf("password hash parameter %q: %w", kv, err)
		}
		switch k {
		case "m":
			p.Memory = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				return false, fmt.Errorf("password hash parameter %q is out of range", kv)
			}
			p.Threads = uint8(n)
		default:
			return false, fmt.Errorf("password hash parameter %q is unknown", kv)
		}
	}
	// Bounds keep a tampered hash from exhausting memory or time.
	if p.Memory < 8 || p.Memory > 4*1024*1024 || p.Time < 1 || p.Time > 100 || p.Threads < 1 {
		return false, fmt.Errorf("password hash parameters %+v are out of range", p)
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("password hash salt: %w", err)
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, errors.New("password hash key is malformed")
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

func mustAffect(res sql.Result, what, name string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s %q: %w", what, name, err)
	}
	if n == 0 {
		return fmt.Errorf("%s %q: %w", what, name, ErrNotFound)
	}
	return nil
}

// isConstraint reports whether SQLite refused a write for a uniqueness or key
// constraint.
func isConstraint(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
	}
	return false
}
