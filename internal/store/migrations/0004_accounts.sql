-- Web accounts: administrators and resellers. Passwords are argon2id hashes in
-- PHC format ($argon2id$v=19$m=...,t=...,p=...$salt$hash); never plain text.
CREATE TABLE accounts (
    name          TEXT    PRIMARY KEY,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'reseller')),
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,          -- unix milliseconds
    password_at   INTEGER NOT NULL           -- unix milliseconds of the last password change
);

-- Privileges an administrator granted to a reseller ("smtp-restrictions").
CREATE TABLE account_privileges (
    account   TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    privilege TEXT NOT NULL,
    PRIMARY KEY (account, privilege)
);

-- The system users a reseller owns: they see blocked attempts of these only.
CREATE TABLE account_users (
    account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    user    TEXT NOT NULL,
    PRIMARY KEY (account, user)
);

-- Signed-in browser sessions. Only a SHA-256 of the cookie's secret is kept,
-- so a copy of the database does not sign anybody in.
CREATE TABLE sessions (
    secret_hash TEXT    PRIMARY KEY,
    account     TEXT    NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,            -- unix milliseconds
    expires_at  INTEGER NOT NULL,            -- absolute expiry
    last_seen   INTEGER NOT NULL,            -- for the idle timeout
    remote      TEXT    NOT NULL DEFAULT '',
    flash       TEXT    NOT NULL DEFAULT ''  -- one message for the next page
);
CREATE INDEX sessions_account ON sessions (account);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- API tokens for scripts (Authorization: Bearer). Only a SHA-256 of the token
-- is kept; the token itself is shown once, when created.
CREATE TABLE api_tokens (
    name        TEXT    PRIMARY KEY,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'reseller')),
    account     TEXT    REFERENCES accounts (name) ON DELETE CASCADE, -- NULL: not tied to an account
    secret_hash TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,            -- unix milliseconds
    last_used   INTEGER NOT NULL DEFAULT 0   -- 0: never
);
