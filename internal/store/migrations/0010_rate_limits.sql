-- Rate limits on allowed connections: the default for every allowance, and
-- each allowed user's, group's and exception's own ('' follows the default,
-- 'off' is no limit, else N/PERIOD such as '100/h').
ALTER TABLE policy ADD COLUMN rate_limit TEXT NOT NULL DEFAULT '';
ALTER TABLE allowed ADD COLUMN rate TEXT NOT NULL DEFAULT '';
ALTER TABLE exceptions ADD COLUMN rate TEXT NOT NULL DEFAULT '';
