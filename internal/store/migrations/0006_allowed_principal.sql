-- Removing principals looks them up by what they are, not by position: index
-- that, so a revoke or a large shrink does not scan the whole list per row.
CREATE INDEX allowed_principal ON allowed (kind, name, id, by_id);
