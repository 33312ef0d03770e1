package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTLS runs a seeder on https with a self-signed certificate: publish, status and an agent
// work with --ca, and refuse without it. The agent's tracker announces must verify TLS too:
// web seeds are held back for a minute, so the release can only come from the swarm.
func TestTLS(t *testing.T) {
	d := Init(t)
	certFile, keyFile := selfSigned(t, t.TempDir())
	addr := FreeAddr(t)
	url := "https://" + addr
	Start(t, "seeder", "seeder", "--data", filepath.Join(t.TempDir(), "seeder"), "--listen", addr, "--keys", d.Dir,
		"--tls-cert", certFile, "--tls-key", keyFile)
	awaitHTTPS(t, url, certFile)
	rel := WriteRelease(t, t.TempDir(), "app", 1<<20, 9)

	r := Run(t, "publish", "--seeder", url, "--keys", d.Dir, "--channel", "stable", "--version", "1.0.0", rel)
	if r.Err == nil || !strings.Contains(r.Stderr, "certificate") {
		t.Fatalf("publish without --ca: err %v, stderr %q; want a certificate error", r.Err, r.Stderr)
	}
	MustRun(t, "publish", "--seeder", url, "--keys", d.Dir, "--ca", certFile, "--channel", "stable", "--version", "1.0.0", rel)
	MustRun(t, "status", "--seeder", url, "--keys", d.Dir, "--ca", certFile)

	dir := t.TempDir()
	data, install := filepath.Join(dir, "data"), filepath.Join(dir, "install")
	r = Run(t, append([]string{"--log-level", "error", "agent", "--once"}, AgentArgs(d, data, install, "stable", url)...)...)
	if r.Err == nil || !strings.Contains(r.Stderr, "certificate") {
		t.Fatalf("agent without --ca: err %v, stderr %q; want a certificate error", r.Err, r.Stderr)
	}
	MustRun(t, append([]string{"agent", "--once", "--ca", certFile, "--fallback-after", "1m", "--stall-timeout", "20s"},
		AgentArgs(d, data, install, "stable", url)...)...)
	SameTree(t, rel, filepath.Join(install, "current"))
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "peerpatch test seeder"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func awaitHTTPS(t *testing.T, url, certFile string) {
	t.Helper()
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := c.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("https seeder at %s not healthy after 20s", url)
}
