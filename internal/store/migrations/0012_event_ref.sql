-- The reference the explain responder gave the client in its 554 reply, so
-- an administrator can find the attempt a user's error message names. It
-- is derived from the aggregate's key, so every attempt of one aggregate
-- carries the same one; '' for attempts nobody was told about.
ALTER TABLE events ADD COLUMN ref TEXT NOT NULL DEFAULT '';
CREATE INDEX events_by_ref ON events (ref) WHERE ref != '';
