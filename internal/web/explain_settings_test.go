package web

import (
	"context"
	"net/http"
	"testing"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// The API and the settings page take explain mode like the others, and the
// backend gets an explain ruleset.
func TestSettingsExplainMode(t *testing.T) {
	e := newTestEnv(t)
	tok := e.tokens["ci"]
	if w := e.do(req{method: "POST", path: "/api/v1/enable", bearer: tok}); w.Code != http.StatusOK {
		t.Fatalf("enable = %d %s", w.Code, w.Body.String())
	}
	if w := e.do(req{method: "PUT", path: "/api/v1/settings", bearer: tok, json: `{"ports":[25,465,587],"mode":"explain","allow_local":true}`}); w.Code != http.StatusOK {
		t.Fatalf("PUT settings mode explain = %d %s", w.Code, w.Body.String())
	}
	p, _, err := e.st.Policy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != policy.ModeExplain {
		t.Errorf("stored mode = %q, want explain", p.Mode)
	}
	if rs := e.backend.Installed(); rs == nil || rs.Mode != policy.ModeExplain || rs.ExplainPort != policy.DefaultExplainPort {
		t.Errorf("backend holds %+v, want explain mode to port %d", rs, policy.DefaultExplainPort)
	}
}
