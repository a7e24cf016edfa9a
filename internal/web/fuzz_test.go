package web

import (
	"encoding/json"
	"net/http"
	"testing"
)

// apiWrites are the API routes that take a JSON body.
var apiWrites = []struct{ method, path string }{
	{"POST", "/api/v1/allowed"},
	{"DELETE", "/api/v1/allowed"},
	{"PUT", "/api/v1/settings"},
	{"PUT", "/api/v1/mta"},
	{"POST", "/api/v1/enable"},
	{"POST", "/api/v1/disable"},
}

// FuzzAPIBodies sends arbitrary JSON bodies to every API route that reads
// one, as an admin token. Whatever the body, the answer is a client error or
// a success in JSON (never a 5xx or a panic), an error always says what was
// wrong, and the kernel still matches the stored policy: bad input changes
// nothing halfway.
func FuzzAPIBodies(f *testing.F) {
	for _, body := range []string{
		`{"kind":"user","name":"alice"}`,
		`{"kind":"group","name":"mailers"}`,
		`{"kind":"user","name":"bob","to":"192.0.2.0/24","ports":[587]}`,
		`{"kind":"user","name":"bob","to":"relay.example.test","ports":[25,587]}`,
		`{"kind":"user","name":"1002","to":"2001:db8::/32"}`,
		`{"ports":[25,465,587],"mode":"reject","allow_local":true}`,
		`{"ports":[2525],"mode":"redirect"}`,
		`{"mode":"log"}`,
		`{"ports":[0]}`,
		`{"ports":[70000]}`,
		`{"max_connections":100,"max_per_host":10}`,
		`{"kind":"user","name":"no such user"}`,
		`{"kind":"wizard","name":"alice"}`,
		`{"kind":"user","name":"alice","extra":1}`,
		`{"kind":"user","name":"alice"}{"kind":"user","name":"bob"}`,
		`[]`, `null`, `""`, `{`, ``, "\x00",
	} {
		for route := range apiWrites {
			f.Add(uint8(route), body)
		}
	}
	e := newTestEnv(f)
	token := e.tokens["ci"]
	f.Fuzz(func(t *testing.T, route uint8, body string) {
		rt := apiWrites[int(route)%len(apiWrites)]
		e.t = t
		w := e.do(req{method: rt.method, path: rt.path, json: body, bearer: token})
		if w.Code >= 500 || (w.Code != http.StatusOK && w.Code/100 != 4) {
			t.Fatalf("%s %s %q = %d %s; want 200 or a 4xx", rt.method, rt.path, body, w.Code, w.Body.String())
		}
		var reply map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &reply); err != nil {
			t.Fatalf("%s %s %q = %d with a body that is not a JSON object: %v\n%s", rt.method, rt.path, body, w.Code, err, w.Body.String())
		}
		if msg, _ := reply["error"].(string); w.Code != http.StatusOK && msg == "" {
			t.Fatalf("%s %s %q = %d without an error message: %s", rt.method, rt.path, body, w.Code, w.Body.String())
		}
		st, err := e.eng.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Kernel.State != "in sync" && st.Kernel.State != "not enforcing" {
			t.Fatalf("after %s %s %q (%d): kernel %q; want it to match the stored policy", rt.method, rt.path, body, w.Code, st.Kernel.State)
		}
	})
}
