-- Holds: a uid whose allowances are suspended (treated as an ordinary user)
-- until a time or until released. Rows are kept after they end: they are the
-- history escalation counts and the audit trail of who held and released.
CREATE TABLE holds (
    id          INTEGER PRIMARY KEY,
    uid         INTEGER NOT NULL,
    user        TEXT    NOT NULL DEFAULT '',
    since       INTEGER NOT NULL,            -- unix milliseconds
    until       INTEGER,                     -- unix milliseconds; NULL: until released
    reason      TEXT    NOT NULL DEFAULT '',
    held_by     TEXT    NOT NULL,            -- an account ("cli:root") or the threshold ("hold-after 10/1m")
    count       INTEGER NOT NULL DEFAULT 0,  -- attempts that triggered an automatic hold
    released_at INTEGER,                     -- unix milliseconds; NULL while not released
    released_by TEXT    NOT NULL DEFAULT '', -- an account, or "expiry"
    -- Whether the daemon has announced the start and the end (HoldNotice):
    -- each is announced once, even across restarts.
    announced_start INTEGER NOT NULL DEFAULT 0,
    announced_end   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX holds_by_uid ON holds (uid, since);
CREATE INDEX holds_open ON holds (released_at);

-- The automatic hold's settings, and a revision every hold, release and
-- setting change bumps so the daemon notices them.
CREATE TABLE hold_settings (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    after_count     INTEGER NOT NULL DEFAULT 0, -- 0: no automatic hold
    after_period_ms INTEGER NOT NULL DEFAULT 0,
    for_ms          INTEGER NOT NULL DEFAULT 3600000, -- 0: until released
    revision        INTEGER NOT NULL DEFAULT 0
);
INSERT INTO hold_settings (id) VALUES (1);
