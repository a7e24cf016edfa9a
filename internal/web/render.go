package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

// layoutFile wraps every view.
const layoutFile = "layout.html"

// viewNames are the pages, each templates/NAME.html rendered inside the layout.
// TestEveryTemplateIsReferenced checks that this list and the directory agree.
func viewNames() []string {
	return []string{"login", "status", "allowed", "settings", "events", "audit", "accounts", "mta", "error", "confirm"}
}

// timeLayout shows every time with its zone: a server's clock and the
// reader's may differ.
const timeLayout = "2006-01-02 15:04:05 MST"

// templateFuncs are the helpers views may call.
func templateFuncs() template.FuncMap {
	return template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return t.Local().Format(timeLayout)
		},
		"whenp": func(t *time.Time) string {
			if t == nil || t.IsZero() {
				return "never"
			}
			return t.Local().Format(timeLayout)
		},
		"day":      func(t time.Time) string { return t.Local().Format("2006-01-02") },
		"join":     strings.Join,
		"dnsWords": dnsWords,
		"words":    webWords,
		"ports":    portsString,
		"rateNote": rateNote,
		"until":    untilText,
		"dash": func(s string) string {
			if s == "" {
				return "—"
			}
			return s
		},
		"has": func(list []string, v string) bool {
			for _, x := range list {
				if x == v {
					return true
				}
			}
			return false
		},
	}
}

func portsString(ports []uint16) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = fmt.Sprint(p)
	}
	return strings.Join(parts, ", ")
}

// parseViews parses every view with the layout, once, at start: a broken
// template stops the daemon from starting rather than failing a request.
func parseViews() (map[string]*template.Template, error) {
	views := map[string]*template.Template{}
	for _, name := range viewNames() {
		t, err := template.New(layoutFile).Funcs(templateFuncs()).ParseFS(templateFiles, "templates/"+layoutFile, "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		views[name] = t
	}
	entries, err := fs.ReadDir(templateFiles, "templates")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".html")
		if _, ok := views[name]; !ok && e.Name() != layoutFile {
			return nil, fmt.Errorf("template %s is not a view: add it to viewNames or delete it", e.Name())
		}
	}
	return views, nil
}

// page is what every view gets.
type page struct {
	Title string
	Host  string // the server this page manages
	Nav   string // the active navigation entry
	Me    *identity
	Flash flash  // the outcome of the change before a redirect
	Error string // what went wrong, shown above the content
	Data  any
}

// render executes a view into a buffer and writes it only when complete, so
// a template error becomes a clean 500 instead of half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, view string, p *page) {
	if p.Me == nil {
		p.Me = &identity{}
	}
	p.Host = s.host
	if p.Flash.Text == "" && p.Me.secret != "" {
		// Whatever page comes next shows the message, also those whose
		// handler does not ask for it.
		p.Flash = s.takeFlash(r, p.Me)
	}
	p.Flash.Text, p.Error = webWords(p.Flash.Text), webWords(p.Error)
	t, ok := s.views[view]
	var buf bytes.Buffer
	err := fmt.Errorf("no view %q", view)
	if ok {
		err = t.ExecuteTemplate(&buf, layoutFile, p)
	}
	if err != nil {
		s.log.Error("cannot render page", "view", view, "path", r.URL.Path, "err", err)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintln(w, "internal error: the page could not be rendered (see the smtpguard log)")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	buf.WriteTo(w)
}

// writeJSON answers with a JSON document.
func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "{\"error\": %q}\n", "encode response: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	buf.WriteTo(w)
}

// flash leaves a message for the next page of a signed-in browser, kept
// server-side with the session. Tokens have no session, so their message is
// dropped.
func (s *Server) flash(r *http.Request, id *identity, f flash) {
	if id.secret == "" {
		return
	}
	if err := s.eng.SetFlash(r.Context(), id.secret, f.encode()); err != nil {
		s.log.Warn("cannot keep a message for the next page", "err", err)
	}
}

// takeFlash returns the message left by the previous request.
func (s *Server) takeFlash(r *http.Request, id *identity) flash {
	if id.secret == "" {
		return flash{}
	}
	msg, err := s.eng.TakeFlash(r.Context(), id.secret)
	if err != nil {
		s.log.Warn("cannot read the message for this page", "err", err)
	}
	return decodeFlash(msg)
}

// rateNote says an allowance's rate limit in a few words: its own (own, as
// stored: "5/m", "off"), else the default's (def), else nothing.
func rateNote(own, def string) string {
	switch {
	case own == "off":
		return "no rate limit"
	case own != "":
		return "at most " + own
	case def != "" && def != "off":
		return "at most " + def + " (default)"
	}
	return ""
}
