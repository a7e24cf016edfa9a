// Package doctor is smtpguard's checklist: one check per thing that must hold
// for outgoing mail to work as the administrator meant (the policy's verdict,
// the kernel, the daemon, the MTA, other tools' SMTP blocks, the network
// upstream), each failure with the one thing to do about it. The checks are
// built from facts the engine and the system report; the network probes are
// bounded in time.
package doctor

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// Check is one line of the checklist. Fix is empty when OK.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

// Report is the whole checklist, in a fixed order.
type Report struct {
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// Failed names the checks that failed, in order.
func (r Report) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c.Name)
		}
	}
	return out
}

// Step computes one check. Run must return once ctx is done.
type Step struct {
	Name string
	Run  func(ctx context.Context) Check
}

// Run runs the steps at once (the network probes wait on their own bounds,
// not on each other), each bounded by timeout, and reports their checks in
// the steps' order. A step that has not answered when its bound is over
// (plus a moment to say why) fails as "did not finish"; it is not waited for.
func Run(ctx context.Context, timeout time.Duration, steps []Step) Report {
	results := make([]chan Check, len(steps))
	for i, s := range steps {
		results[i] = make(chan Check, 1)
		go func() {
			sctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			results[i] <- s.Run(sctx)
		}()
	}
	// The grace lets a step that honours its context report its own
	// timeout, which says more than ours.
	giveUp := time.NewTimer(timeout + timeout/4 + 100*time.Millisecond)
	defer giveUp.Stop()
	late := false
	rep := Report{OK: true, Checks: make([]Check, len(steps))}
	for i, s := range steps {
		var c Check
		var done bool
		if !late {
			select {
			case c = <-results[i]:
				done = true
			case <-giveUp.C:
				late = true
			}
		}
		if late && !done {
			// Past the bound, take only what is already there.
			select {
			case c = <-results[i]:
			default:
				c = Check{Detail: fmt.Sprintf("did not finish within %v", timeout),
					Fix: "something it asks does not answer in time: run doctor again with a longer --timeout"}
			}
		}
		c.Name = s.Name
		if c.OK {
			c.Fix = ""
		}
		rep.Checks[i] = c
		rep.OK = rep.OK && c.OK
	}
	return rep
}

// WriteText prints the checklist for a person: one line per check, the fix
// of a failed one on the line after, and a summary.
func (r Report) WriteText(w io.Writer) error {
	width := 0
	for _, c := range r.Checks {
		width = max(width, len(c.Name))
	}
	var b strings.Builder
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "%s  %-*s  %s\n", mark, width, c.Name, c.Detail)
		if !c.OK && c.Fix != "" {
			fmt.Fprintf(&b, "      %-*s  fix: %s\n", width, "", c.Fix)
		}
	}
	if failed := r.Failed(); len(failed) > 0 {
		fmt.Fprintf(&b, "%d of %d checks failed: %s\n", len(failed), len(r.Checks), strings.Join(failed, ", "))
	} else {
		fmt.Fprintf(&b, "all %d checks passed\n", len(r.Checks))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
