-- The policy is one row: the desired state an administrator controls.
CREATE TABLE policy (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    enabled     INTEGER NOT NULL,
    backend     TEXT    NOT NULL,
    mode        TEXT    NOT NULL,
    ports       TEXT    NOT NULL,          -- "25,465,587"
    allow_local INTEGER NOT NULL,
    revision    INTEGER NOT NULL,          -- bumped on every change; the daemon watches it
    updated_at  INTEGER NOT NULL,          -- unix milliseconds
    updated_by  TEXT    NOT NULL
);

-- Allowed users and groups, in the order they were added.
CREATE TABLE allowed (
    kind     TEXT    NOT NULL CHECK (kind IN ('user', 'group')),
    position INTEGER NOT NULL,
    name     TEXT    NOT NULL,
    id       INTEGER NOT NULL,
    by_id    INTEGER NOT NULL,
    PRIMARY KEY (kind, position)
);

-- Who changed what, when, from where.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,            -- unix milliseconds
    actor     TEXT    NOT NULL,
    source    TEXT    NOT NULL,            -- cli, web, api, daemon
    remote    TEXT    NOT NULL DEFAULT '',
    operation TEXT    NOT NULL,
    detail    TEXT    NOT NULL DEFAULT '',
    before    TEXT    NOT NULL DEFAULT '',  -- policy file (JSON) before the change
    after     TEXT    NOT NULL DEFAULT '',
    outcome   TEXT    NOT NULL             -- "ok" or the error that undid the change
);
CREATE INDEX audit_at ON audit (at);

-- Blocked attempts, aggregated per (uid, destination, port, minute).
CREATE TABLE events (
    uid        INTEGER NOT NULL,
    user       TEXT    NOT NULL DEFAULT '',
    family     INTEGER NOT NULL,           -- 4 or 6
    daddr      TEXT    NOT NULL,
    dport      INTEGER NOT NULL,
    minute     INTEGER NOT NULL,           -- unix minutes
    action     TEXT    NOT NULL,           -- blocked or logged
    count      INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,           -- unix milliseconds
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (uid, daddr, dport, minute, action)
);
CREATE INDEX events_last_seen ON events (last_seen);
