package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// confirmField is the form field that says a person confirmed a change that
// opens the server or removes something. Without it, the handler answers
// with a confirmation page (no script needed) whose button posts the same
// form again with it.
const confirmField = "confirm"

// confirmation is the confirm view.
type confirmation struct {
	Question string // "Disable the SMTP restriction?"
	Effect   string // what happens, in words
	Action   string // where the confirmed form posts
	Fields   []confirmValue
	Button   string // "Disable"
	Cancel   string // where "Cancel" goes
	Danger   bool
}

type confirmValue struct{ Name, Value string }

// confirmed reports whether the form carries the confirmation. Call after
// parseForm.
func confirmed(r *http.Request) bool { return r.PostForm.Get(confirmField) == "yes" }

// askFirst answers with the confirmation page: 200, nothing changed. The
// posted fields ride along as hidden fields, so confirming repeats exactly
// the change that was asked for.
func (s *Server) askFirst(w http.ResponseWriter, r *http.Request, id *identity, title string, c confirmation) error {
	if c.Action == "" {
		c.Action = r.URL.Path
	}
	keys := make([]string, 0, len(r.PostForm))
	for k := range r.PostForm {
		if k != confirmField {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range r.PostForm[k] {
			c.Fields = append(c.Fields, confirmValue{k, v})
		}
	}
	s.render(w, r, http.StatusOK, "confirm", &page{Title: title, Nav: navOf(c.Cancel), Me: id, Data: c})
	return nil
}

// navOf is the navigation entry of a local path.
func navOf(path string) string {
	p, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "?")
	p, _, _ = strings.Cut(p, "/")
	if p == "" {
		return "status"
	}
	return p
}

// flash is a message carried over a redirect, and how it looks: "ok" (a
// change was made), "info" (nothing changed) or "warn" (made, but something
// needs attention).
type flash struct {
	Tone, Text string
}

// Flash tones.
const (
	toneOK   = "ok"
	toneInfo = "info"
	toneWarn = "warn"
)

// encode keeps the tone with the text in the session's one message slot.
func (f flash) encode() string { return f.Tone + "\x1f" + f.Text }

func decodeFlash(s string) flash {
	if s == "" {
		return flash{}
	}
	tone, text, ok := strings.Cut(s, "\x1f")
	if !ok {
		return flash{Tone: toneOK, Text: s}
	}
	return flash{Tone: tone, Text: text}
}

// toneOf is the tone of an engine result: nothing changed is not a success
// to celebrate.
func toneOf(changed bool) string {
	if changed {
		return toneOK
	}
	return toneInfo
}

// webWords rewrites the command-line spelling the engine uses in messages
// ("user alice --to relay.example --port 587") for the page, where there are
// no flags to type.
func webWords(msg string) string {
	r := strings.NewReplacer(" --to ", " to ", " --port ", " on port ", " --ports ", " on ports ",
		"name it with --account", "choose it under Acts for account")
	return r.Replace(msg)
}

// safeLocal returns path when it is a path on this server ("/events?x=1"),
// else "/": a sign-in link must not send anyone to another site.
func safeLocal(path string) string {
	if path == "" || path[0] != '/' || strings.HasPrefix(path, "//") || strings.ContainsAny(path, "\\\r\n\t") {
		return "/"
	}
	u, err := url.Parse(path)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	if u.Path == "/login" || u.Path == "/logout" {
		return "/"
	}
	return u.RequestURI()
}
