-- Pages of events sorted by count follow this order (most attempts first,
-- then the time order's key), so each page seeks instead of sorting every
-- matching row.
CREATE INDEX events_by_count ON events (count DESC, minute DESC, uid, daddr, dport, action);
