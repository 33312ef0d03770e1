package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAuthOnlyForSeeders(t *testing.T) {
	var seen = map[string]string{}
	srv := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen[name] = r.Header.Get("Authorization")
		}))
	}
	seeder, mirror := srv("seeder"), srv("mirror")
	defer seeder.Close()
	defer mirror.Close()

	c := &http.Client{Transport: NewAuth("s3cret", seeder.URL+"/").Transport(nil)}
	for _, u := range []string{seeder.URL + "/tuf/root.json", mirror.URL + "/stable/1.0.0/app"} {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if seen["seeder"] != "Bearer s3cret" {
		t.Errorf("seeder got Authorization %q, want the bearer token", seen["seeder"])
	}
	if seen["mirror"] != "" {
		t.Errorf("mirror got Authorization %q: the token leaked to a third party", seen["mirror"])
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		name string
		code int
		body string
		want string
	}{
		{name: "error document", code: 401, body: `{"error":"missing or invalid agent token"}`, want: "missing or invalid agent token (HTTP 401)"},
		{name: "plain body", code: 502, body: "<html>bad gateway</html>", want: "HTTP 502 Bad Gateway"},
		{name: "empty", code: 404, body: "", want: "HTTP 404 Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ErrorText(tt.code, []byte(tt.body)); got != tt.want {
				t.Errorf("ErrorText = %q, want %q", got, tt.want)
			}
		})
	}
}
