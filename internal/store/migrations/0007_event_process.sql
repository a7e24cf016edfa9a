-- The process that made an aggregate's attempts, where the backend reports a
-- pid (bpf) and /proc still had it: the last one seen. The aggregation key
-- stays (uid, destination, port, minute, action), so a looping script with a
-- new pid per attempt adds no rows.
ALTER TABLE events ADD COLUMN pid       INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN comm      TEXT    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN exe       TEXT    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN cmdline   TEXT    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN cwd       TEXT    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN cgroup    TEXT    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN unit      TEXT    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN container TEXT    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN pool      TEXT    NOT NULL DEFAULT '';
