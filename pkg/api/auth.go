package api

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
)

// Auth adds a bearer credential to requests bound for the seeders' hosts, and only those: a
// third-party web-seed mirror never sees it. Each seeder's credential can be replaced at any
// time (an agent swaps the fleet enrolment token for the credential a seeder gave it).
type Auth struct {
	bearers map[string]*atomic.Pointer[string] // seeder host → "Bearer …"
}

// NewAuth returns an Auth that sends token to the hosts (host:port) of the seeder base URLs.
func NewAuth(token string, seederURLs ...string) *Auth {
	a := &Auth{bearers: make(map[string]*atomic.Pointer[string])}
	for _, s := range seederURLs {
		if h := hostOf(s); h != "" {
			a.bearers[h] = new(atomic.Pointer[string])
			a.SetToken(s, token)
		}
	}
	return a
}

func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Host)
}

// SetToken replaces the credential sent to the seeder at seederURL (one given to NewAuth).
func (a *Auth) SetToken(seederURL, token string) {
	if p := a.bearers[hostOf(seederURL)]; p != nil {
		b := "Bearer " + token
		p.Store(&b)
	}
}

// Authorize sets the Authorization header on r if r goes to a seeder.
func (a *Auth) Authorize(r *http.Request) {
	if p := a.bearers[strings.ToLower(r.URL.Host)]; p != nil {
		r.Header.Set("Authorization", *p.Load())
	}
}

// Transport wraps base (nil: http.DefaultTransport) so every request is authorized.
func (a *Auth) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		a.Authorize(r)
		return base.RoundTrip(r)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// NewTransport returns an HTTP transport that verifies TLS against the system's roots plus, if
// caFile is not empty, the PEM certificates in caFile (a deployment's own CA or a self-signed
// seeder certificate).
func NewTransport(caFile string) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if caFile == "" {
		return t, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read --ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %q: no PEM certificate in it", caFile)
	}
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return t, nil
}
