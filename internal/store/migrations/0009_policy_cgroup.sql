-- The cgroup a cgroup backend (bpf) attaches to, kept with the policy so the
-- daemon re-converges the same attachment at boot; '' is the backend's
-- default (the cgroup2 root).
ALTER TABLE policy ADD COLUMN cgroup TEXT NOT NULL DEFAULT '';
