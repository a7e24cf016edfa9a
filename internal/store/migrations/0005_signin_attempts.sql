-- Sign-in attempts, so the web UI's lockout survives a daemon restart and an
-- administrator can lift it from the command line. Three kinds of rows:
--   account and remote set: one account from one client address; locked out
--                           (locked_until) after repeated failures;
--   remote empty:           one account from anywhere; slowed down (next_at),
--                           never locked, so nobody can lock its owner out;
--   account empty:          one client address, any account; slowed down.
-- failures counts the attempts of the current window, those still being
-- checked included: an attempt is counted before its password is checked.
CREATE TABLE signin_attempts (
    account      TEXT    NOT NULL,
    remote       TEXT    NOT NULL,
    failures     INTEGER NOT NULL DEFAULT 0,
    window_start INTEGER NOT NULL,            -- unix milliseconds
    last_at      INTEGER NOT NULL,            -- unix milliseconds of the last attempt
    next_at      INTEGER NOT NULL DEFAULT 0,  -- no attempt is checked before then
    locked_until INTEGER NOT NULL DEFAULT 0,  -- refused until then; 0: not locked
    PRIMARY KEY (account, remote)
);
CREATE INDEX signin_attempts_last_at ON signin_attempts (last_at);
