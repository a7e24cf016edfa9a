package store

import (
	"context"
	"time"
)

// Test-only shorthands: each write in a transaction of its own, as the
// engine's operations run them. Production code writes through Tx.

func (s *Store) inTx(ctx context.Context, fn func(tx *Tx) error) error {
	tx, err := s.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *Store) CreateAccount(ctx context.Context, name, role, hash string, at time.Time) error {
	return s.inTx(ctx, func(tx *Tx) error { return tx.CreateAccount(ctx, name, role, hash, at) })
}

func (s *Store) SetPassword(ctx context.Context, name, hash string, at time.Time) error {
	return s.inTx(ctx, func(tx *Tx) error { return tx.SetPassword(ctx, name, hash, at) })
}

func (s *Store) DeleteAccount(ctx context.Context, name string) error {
	return s.inTx(ctx, func(tx *Tx) error { return tx.DeleteAccount(ctx, name) })
}

func (s *Store) Grant(ctx context.Context, name, priv string) (changed bool, err error) {
	err = s.inTx(ctx, func(tx *Tx) error { changed, err = tx.Grant(ctx, name, priv); return err })
	return changed, err
}

func (s *Store) RevokePrivilege(ctx context.Context, name, priv string) (changed bool, err error) {
	err = s.inTx(ctx, func(tx *Tx) error { changed, err = tx.RevokePrivilege(ctx, name, priv); return err })
	return changed, err
}

func (s *Store) SetOwnedUsers(ctx context.Context, name string, users []string) error {
	return s.inTx(ctx, func(tx *Tx) error { _, err := tx.SetOwnedUsers(ctx, name, users); return err })
}

func (s *Store) CreateToken(ctx context.Context, t Token, secret string) error {
	return s.inTx(ctx, func(tx *Tx) error { return tx.CreateToken(ctx, t, secret) })
}

func (s *Store) DeleteToken(ctx context.Context, name string) error {
	return s.inTx(ctx, func(tx *Tx) error { return tx.DeleteToken(ctx, name) })
}
