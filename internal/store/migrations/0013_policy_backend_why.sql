-- Why enable chose the policy's backend and not each other one (a JSON
-- object, backend name -> reason), for status: "auto could not use bpf:
-- ...", "auto prefers bpf, which works here". '' before the first enable.
ALTER TABLE policy ADD COLUMN backend_why TEXT NOT NULL DEFAULT '';
