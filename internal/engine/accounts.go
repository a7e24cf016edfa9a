package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/smtpguard/smtpguard/internal/store"
)

// Web accounts, reseller privileges, owned users and API tokens change here
// and nowhere else: the CLI and the web UI both call these operations. Each
// is one store transaction holding the change and its audit record, validates
// its input with one set of messages, and writes no audit record when it
// changes nothing.

// ValidateAccount checks an account name and role, with the messages every
// caller shows; the CLI calls it before asking for a password, so nobody
// types one for nothing.
func ValidateAccount(name, role string) error {
	if err := store.CheckName("account", name); err != nil {
		return invalid(err)
	}
	if _, err := store.ParseRole(role); err != nil {
		return invalid(err)
	}
	return nil
}

// ValidatePassword checks a new password's length.
func ValidatePassword(pw string) error {
	if err := store.CheckPassword(pw); err != nil {
		return invalid(err)
	}
	return nil
}

// PasswordCost is the argon2id cost of the password hashes the engine makes.
func (e *Engine) PasswordCost() store.Argon2Params { return e.cfg.Argon2 }

// accountChange runs fn in one transaction and records it in the audit log
// when fn reports a change. Errors of input become ErrValidation, except a
// missing account or token, which stays store.ErrNotFound.
func (e *Engine) accountChange(ctx context.Context, actor Actor, op, detail string, fn func(tx *store.Tx) (msg string, changed bool, err error)) (Result, error) {
	tx, err := e.store.Begin(ctx)
	if err != nil {
		return Result{}, err
	}
	defer tx.Rollback()
	msg, changed, err := fn(tx)
	if err != nil {
		return Result{}, accountInput(err)
	}
	if !changed {
		return Result{Message: msg}, nil
	}
	rec := store.AuditRecord{At: e.cfg.Now(), Actor: actor.Name, Source: actor.Source, Remote: actor.Remote,
		Operation: op, Detail: detail, Outcome: "ok"}
	if err := tx.AppendAudit(ctx, rec); err != nil {
		return Result{}, err
	}
	if err := tx.Commit(); err != nil {
		return Result{}, err
	}
	e.log.Info("account changed", "operation", op, "detail", detail, "actor", actor.Name, "source", actor.Source)
	return Result{Changed: true, Message: msg}, nil
}

func accountInput(err error) error {
	if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrExists) {
		return invalid(err)
	}
	return err
}

func (e *Engine) hash(pw string) (string, error) {
	if err := ValidatePassword(pw); err != nil {
		return "", err
	}
	return store.HashPassword(pw, e.cfg.Argon2)
}

// AddAccount creates a web account with role admin or reseller.
func (e *Engine) AddAccount(ctx context.Context, actor Actor, name, role, password string) (Result, error) {
	if err := ValidateAccount(name, role); err != nil {
		return Result{}, err
	}
	hash, err := e.hash(password)
	if err != nil {
		return Result{}, err
	}
	return e.accountChange(ctx, actor, "account add", name+" role "+role, func(tx *store.Tx) (string, bool, error) {
		if err := tx.CreateAccount(ctx, name, role, hash, e.cfg.Now()); err != nil {
			return "", false, err
		}
		return fmt.Sprintf("account %s created with role %s", name, role), true, nil
	})
}

// SetPassword replaces an account's password and signs it out everywhere.
func (e *Engine) SetPassword(ctx context.Context, actor Actor, name, password string) (Result, error) {
	hash, err := e.hash(password)
	if err != nil {
		return Result{}, err
	}
	return e.accountChange(ctx, actor, "account passwd", name, func(tx *store.Tx) (string, bool, error) {
		if err := tx.SetPassword(ctx, name, hash, e.cfg.Now()); err != nil {
			return "", false, err
		}
		return fmt.Sprintf("password of %s changed; its sessions were signed out", name), true, nil
	})
}

// DeleteAccount removes an account with its sessions, privileges, owned users
// and API tokens.
func (e *Engine) DeleteAccount(ctx context.Context, actor Actor, name string) (Result, error) {
	return e.accountChange(ctx, actor, "account del", name, func(tx *store.Tx) (string, bool, error) {
		if err := tx.DeleteAccount(ctx, name); err != nil {
			return "", false, err
		}
		return fmt.Sprintf("account %s deleted, with its sessions and API tokens", name), true, nil
	})
}

// Grant gives a reseller a privilege; granting one held already changes
// nothing.
func (e *Engine) Grant(ctx context.Context, actor Actor, name, priv string) (Result, error) {
	return e.accountChange(ctx, actor, "account grant", name+" "+priv, func(tx *store.Tx) (string, bool, error) {
		changed, err := tx.Grant(ctx, name, priv)
		if err != nil {
			return "", false, err
		}
		if !changed {
			return fmt.Sprintf("%s already holds %s; nothing changed", name, priv), false, nil
		}
		return fmt.Sprintf("%s granted to %s", priv, name), true, nil
	})
}

// RevokePrivilege takes a privilege back from a reseller.
func (e *Engine) RevokePrivilege(ctx context.Context, actor Actor, name, priv string) (Result, error) {
	return e.accountChange(ctx, actor, "account revoke", name+" "+priv, func(tx *store.Tx) (string, bool, error) {
		changed, err := tx.RevokePrivilege(ctx, name, priv)
		if err != nil {
			return "", false, err
		}
		if !changed {
			return fmt.Sprintf("%s did not hold %s; nothing changed", name, priv), false, nil
		}
		return fmt.Sprintf("%s revoked from %s", priv, name), true, nil
	})
}

// SetOwned replaces the system users a reseller owns; each must be a user of
// this system.
func (e *Engine) SetOwned(ctx context.Context, actor Actor, name string, users []string) (Result, error) {
	dir, err := e.Directory()
	if err != nil {
		return Result{}, err
	}
	for _, u := range users {
		if _, ok := dir.User(u); !ok {
			return Result{}, invalid(fmt.Errorf("no such system user %q: check the name with 'getent passwd %s'", u, u))
		}
	}
	detail := strings.TrimSpace(name + " " + strings.Join(users, " "))
	return e.accountChange(ctx, actor, "account own", detail, func(tx *store.Tx) (string, bool, error) {
		changed, err := tx.SetOwnedUsers(ctx, name, users)
		if err != nil {
			return "", false, err
		}
		msg := fmt.Sprintf("%s owns %s", name, strings.Join(users, ", "))
		if len(users) == 0 {
			msg = fmt.Sprintf("%s owns no system users", name)
		}
		if !changed {
			msg += "; nothing changed"
		}
		return msg, changed, nil
	})
}

// CreateToken creates an API token and returns its secret, which is shown
// once and never stored (only its hash is).
func (e *Engine) CreateToken(ctx context.Context, actor Actor, name, role, account string) (string, Result, error) {
	if err := store.CheckName("token", name); err != nil {
		return "", Result{}, invalid(err)
	}
	if _, err := store.ParseRole(role); err != nil {
		return "", Result{}, invalid(err)
	}
	secret := store.NewSecret("sgt_")
	detail := name + " role " + role
	if account != "" {
		detail += " account " + account
	}
	res, err := e.accountChange(ctx, actor, "token create", detail, func(tx *store.Tx) (string, bool, error) {
		if err := tx.CreateToken(ctx, store.Token{Name: name, Role: role, Account: account, CreatedAt: e.cfg.Now()}, secret); err != nil {
			return "", false, err
		}
		return fmt.Sprintf("token %s created with role %s: store it now, it cannot be shown again", name, role), true, nil
	})
	if err != nil {
		return "", Result{}, err
	}
	return secret, res, nil
}

// RevokeToken revokes an API token at once.
func (e *Engine) RevokeToken(ctx context.Context, actor Actor, name string) (Result, error) {
	return e.accountChange(ctx, actor, "token revoke", name, func(tx *store.Tx) (string, bool, error) {
		if err := tx.DeleteToken(ctx, name); err != nil {
			return "", false, err
		}
		return fmt.Sprintf("token %s revoked", name), true, nil
	})
}
