// Package deploy creates and reads a deployment directory: the TUF trust anchor and keys (see
// package trust) and the two shared secrets, the admin token (publish, fleet status) and the
// agent token (fleet enrolment).
package deploy

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/peerpatch/peerpatch/pkg/trust"
)

// File names inside a deployment directory.
const (
	RootFile       = "root.json"
	AdminTokenFile = "admin.token"
	AgentTokenFile = "agent.token"
)

// Sentinel errors.
var (
	// ErrExists: Init refuses to touch an existing deployment directory.
	ErrExists = errors.New("already exists")
	// ErrBadToken: a token file is empty or malformed.
	ErrBadToken = errors.New("malformed token")
)

// Init creates dir (mode 0700) with a new deployment: root.json, the keys, and fresh random
// tokens (mode 0600). It refuses an existing dir, even an empty one, so nothing is overwritten.
func Init(dir string, now time.Time) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("init deployment %q: %w (choose a new directory)", dir, ErrExists)
		}
		return fmt.Errorf("init deployment %q: %w", dir, err)
	}
	if err := trust.Init(dir, now); err != nil {
		return fmt.Errorf("init deployment %q: %w", dir, err)
	}
	for _, name := range []string{AdminTokenFile, AgentTokenFile} {
		if err := writeToken(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("init deployment %q: %w", dir, err)
		}
	}
	return nil
}

func writeToken(path string) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(hex.EncodeToString(b) + "\n")
	return errors.Join(err, f.Sync(), f.Close())
}

// ReadToken reads a token file. The error names the file, never the token.
func ReadToken(path string) (Token, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < 16 || strings.ContainsAny(s, " \t\r\n") {
		return "", fmt.Errorf("read token %q: %w", path, ErrBadToken)
	}
	return Token(s), nil
}

// Token is a shared secret. Its String and LogValue never reveal it.
type Token string

// String hides the token.
func (Token) String() string { return "[token]" }

// Equal compares in constant time.
func (t Token) Equal(other string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(other)) == 1
}

// Bearer is the HTTP Authorization header value.
func (t Token) Bearer() string { return "Bearer " + string(t) }
