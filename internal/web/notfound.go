package web

import (
	"fmt"
	"net/http"
	"strings"
)

// methodProbe catches what the mux answers to a request no route matches:
// 404, or 405 with the Allow header.
type methodProbe struct {
	header http.Header
	code   int
}

func (p *methodProbe) Header() http.Header         { return p.header }
func (p *methodProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *methodProbe) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}

// unrouted answers a request no route matches in our own words: JSON
// {"error": ...} under /api/, a styled page elsewhere.
func (s *Server) unrouted(w http.ResponseWriter, r *http.Request) {
	probe := &methodProbe{header: http.Header{}}
	h, _ := s.mux.Handler(r)
	h.ServeHTTP(probe, r) // the mux's own 404 or 405: cheap, nothing else runs
	if probe.code != http.StatusNotFound && probe.code != http.StatusMethodNotAllowed {
		s.mux.ServeHTTP(w, r) // e.g. its redirect of an unclean path
		return
	}
	code := http.StatusNotFound
	msg := fmt.Sprintf("there is no page at %s", r.URL.Path)
	if probe.code == http.StatusMethodNotAllowed {
		code = http.StatusMethodNotAllowed
		allow := probe.header.Get("Allow")
		w.Header().Set("Allow", allow)
		msg = fmt.Sprintf("%s does not accept %s: use %s", r.URL.Path, r.Method, strings.ReplaceAll(allow, ", ", " or "))
	}
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/") {
		if code == http.StatusNotFound {
			msg = fmt.Sprintf("no API endpoint %s: see the API list in the README", r.URL.Path)
		}
		writeJSON(w, code, map[string]string{"error": msg})
		return
	}
	// Who is asking only decides the navigation shown; a failed check
	// shows the page without it.
	id, err := s.authenticate(w, r)
	if err != nil {
		id = &identity{}
	}
	s.render(w, r, code, "error", &page{Title: errorTitle(code), Me: id, Data: errorData{Code: code, Message: msg}})
}
