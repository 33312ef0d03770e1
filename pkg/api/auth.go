package api

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// Auth adds a bearer credential to requests bound for the seeders' hosts, and only those: a
// third-party web-seed mirror never sees it.
type Auth struct {
	bearer string
	hosts  map[string]bool
}

// NewAuth returns an Auth for token and the hosts (host:port) of the seeder base URLs.
func NewAuth(token string, seederURLs ...string) *Auth {
	a := &Auth{bearer: "Bearer " + token, hosts: make(map[string]bool)}
	for _, s := range seederURLs {
		if u, err := url.Parse(s); err == nil {
			a.hosts[strings.ToLower(u.Host)] = true
		}
	}
	return a
}

// Authorize sets the Authorization header on r if r goes to a seeder.
func (a *Auth) Authorize(r *http.Request) {
	if a.hosts[strings.ToLower(r.URL.Host)] {
		r.Header.Set("Authorization", a.bearer)
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
