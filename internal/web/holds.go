package web

import (
	"cmp"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/smtpguard/smtpguard/internal/engine"
)

// Holds in the web UI and the API. Only administrators see and change them:
// a hold is of one uid on the whole server, and resellers' views never show
// the server's other users.

// heldBlock is the "On hold" card of the status and allowed pages, with the
// page its Release buttons come back to.
type heldBlock struct {
	Held []engine.HeldUser
	Back string
}

// holdBody is POST /api/v1/holds and DELETE /api/v1/holds.
type holdBody struct {
	User string `json:"user"`
	// For is "30m", "2h", "1d" or "0" (until released); omitted takes the
	// hold-for setting.
	For    *string `json:"for,omitempty"`
	Reason string  `json:"reason,omitempty"`
}

func (s *Server) apiHolds(w http.ResponseWriter, r *http.Request, _ *identity) error {
	held, err := s.eng.Holds(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, held)
	return nil
}

func (s *Server) apiHold(w http.ResponseWriter, r *http.Request, id *identity) error {
	var b holdBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	if strings.TrimSpace(b.User) == "" {
		return badRequest("name the user to hold: {\"user\": \"NAME\"}")
	}
	req := engine.HoldRequest{User: b.User, Reason: b.Reason}
	if b.For != nil {
		d, err := engine.ParseHoldDuration(*b.For)
		if err != nil {
			return badRequest("for: %v", err)
		}
		req.For = &d
	}
	res, err := s.eng.Hold(r.Context(), id.actor(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mutationResult{res.Changed, res.Message})
	return nil
}

func (s *Server) apiRelease(w http.ResponseWriter, r *http.Request, id *identity) error {
	var b holdBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	if b.For != nil || b.Reason != "" {
		return badRequest("a release takes only the user: {\"user\": \"NAME\"}")
	}
	if strings.TrimSpace(b.User) == "" {
		return badRequest("name the user to release: {\"user\": \"NAME\"}")
	}
	res, err := s.eng.Release(r.Context(), id.actor(), b.User)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mutationResult{res.Changed, res.Message})
	return nil
}

// releaseUI is the Release button: it restores the user's allowances, so it
// asks first, then posts, redirects and says what happened.
func (s *Server) releaseUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	user := strings.TrimSpace(r.PostForm.Get("user"))
	back := safeLocal(r.PostForm.Get("back"))
	if user == "" {
		return badRequest("name the user to release")
	}
	if !confirmed(r) {
		who := "user " + user
		if held, err := s.eng.Holds(r.Context()); err == nil {
			for _, h := range held {
				if strconv.FormatUint(uint64(h.UID), 10) == user || h.User == user {
					who = fmt.Sprintf("user %s (uid %d)", cmp.Or(h.User, "without a name"), h.UID)
				}
			}
		}
		return s.askFirst(w, r, id, "Release a hold", confirmation{
			Question: "Release " + who + "?",
			Effect:   "Its allowances and exceptions apply again at once: it may connect to remote SMTP servers as the policy allows. The attempts counted towards the automatic hold are forgotten.",
			Button:   "Release",
			Cancel:   back,
			Danger:   true,
		})
	}
	res, err := s.eng.Release(r.Context(), id.actor(), user)
	if err != nil {
		if msg, ok := userError(err); ok {
			return s.doneWith(w, r, id, back, flash{Tone: toneWarn, Text: msg})
		}
		return err
	}
	return s.doneResult(w, r, id, back, res)
}

// heldFor is the held card's data for an administrator's page at back.
func heldFor(held []engine.HeldUser, back string) *heldBlock {
	return &heldBlock{Held: held, Back: back}
}

// untilText is how the held card shows a hold's end.
func untilText(until *time.Time) string {
	if until == nil {
		return "until released"
	}
	return until.Local().Format(timeLayout)
}

// holdForm is the allowed page's "Put a user on hold" form, kept when the
// page answers with an error.
type holdForm struct {
	User, For, Reason string
}

// holdUI is the allowed page's Hold button. A hold cuts the user's mail to
// remote servers at once, so it asks first; input that cannot be held
// (unknown user, root, a bad duration) answers the page with the error
// before asking, and changes nothing.
func (s *Server) holdUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	f := holdForm{User: strings.TrimSpace(r.PostForm.Get("user")), For: strings.TrimSpace(r.PostForm.Get("for")), Reason: strings.TrimSpace(r.PostForm.Get("reason"))}
	fail := func(msg string) error {
		return s.renderAllowedWith(w, r, id, http.StatusBadRequest, msg, allowForm{Kind: "user"}, f)
	}
	if f.User == "" {
		return fail("enter the user's name or number to hold")
	}
	req := engine.HoldRequest{User: f.User, Reason: f.Reason}
	if f.For != "" {
		d, err := engine.ParseHoldDuration(f.For)
		if err != nil {
			return fail("for: " + err.Error())
		}
		req.For = &d
	}
	if !confirmed(r) {
		uid, name, err := s.eng.HoldTarget(r.Context(), f.User)
		if err != nil {
			if msg, ok := userError(err); ok {
				return fail(msg)
			}
			return err
		}
		how := "until released"
		if req.For == nil {
			hs, err := s.eng.HoldSettings(r.Context())
			if err != nil {
				return err
			}
			if hs.For > 0 {
				how = "for " + engine.HoldForValue(hs.For) + " (the hold-for setting)"
			} else {
				how = "until released (the hold-for setting)"
			}
		} else if *req.For > 0 {
			how = "for " + engine.HoldForValue(*req.For)
		}
		return s.askFirst(w, r, id, "Put a user on hold", confirmation{
			Question: fmt.Sprintf("Put user %s (uid %d) on hold %s?", cmp.Or(name, f.User), uid, how),
			Effect:   "Its allowances and exceptions are suspended at once and its open connections to remote SMTP servers are ended: its scripts are refused like any other user's until the hold ends or someone releases it. Mail it hands to the local mail server still goes out.",
			Button:   "Hold",
			Cancel:   "/allowed",
			Danger:   true,
		})
	}
	res, err := s.eng.Hold(r.Context(), id.actor(), req)
	if err != nil {
		if msg, ok := userError(err); ok {
			return fail(msg)
		}
		return err
	}
	return s.doneResult(w, r, id, "/allowed", res)
}
