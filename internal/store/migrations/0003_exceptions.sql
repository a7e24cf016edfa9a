-- Scoped exceptions: one user or group may reach one destination.
CREATE TABLE exceptions (
    position    INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('user', 'group')),
    name        TEXT    NOT NULL,
    id          INTEGER NOT NULL,
    by_id       INTEGER NOT NULL,
    destination TEXT    NOT NULL,          -- address, CIDR or host name
    ports       TEXT    NOT NULL DEFAULT '' -- "587" or "" for every restricted port
);

-- The last good answers for exception host names, kept while DNS fails.
CREATE TABLE dns_cache (
    name        TEXT    PRIMARY KEY,
    addrs       TEXT    NOT NULL DEFAULT '', -- comma-separated
    ttl_ms      INTEGER NOT NULL DEFAULT 0,
    resolved_at INTEGER NOT NULL DEFAULT 0,  -- unix milliseconds of the last good answer
    error       TEXT    NOT NULL DEFAULT '', -- the last failure, "" when the last lookup worked
    checked_at  INTEGER NOT NULL DEFAULT 0   -- unix milliseconds of the last attempt
);
