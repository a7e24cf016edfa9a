-- Removing principals looks them up by what they are, not by position: index
-- that, so a revoke or a large shrink does not scan the whole list per row.
CREATE INDEX allowed_principal ON allowed (kind, name, id, by_id);

-- Pages of events follow this order (newest minute first); its columns never
-- change once a row exists, so a cursor stays valid while rows arrive.
CREATE INDEX events_page ON events (minute DESC, uid, daddr, dport, action);
