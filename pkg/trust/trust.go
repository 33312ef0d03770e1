// Package trust holds all of peerpatch's use of The Update Framework (TUF,
// via go-tuf v2): creating a deployment's keys and root metadata (Init),
// publishing targets (AddTargets), amending them (SetTargets, Repo.Amend: how
// rollout policies change), the seeder's repository that signs snapshot and
// timestamp metadata with online keys (Repo), and the agent's verifying client
// (Client).
package trust

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Expiry policy of the metadata this package signs.
const (
	// RootExpiry is how long root metadata made by Init is valid.
	RootExpiry = 365 * 24 * time.Hour
	// TargetsExpiry is how long targets metadata is valid; it is renewed at each publish.
	TargetsExpiry = 365 * 24 * time.Hour
	// SnapshotExpiry is how long snapshot metadata is valid. The seeder
	// re-signs it when less than half of this remains.
	SnapshotExpiry = 7 * 24 * time.Hour
	// TimestampExpiry is how long timestamp metadata is valid. The seeder
	// re-signs it when less than half of this remains.
	TimestampExpiry = 24 * time.Hour
)

// Errors returned (wrapped) by this package; test for them with errors.Is.
var (
	// ErrNotFound means a metadata file or target does not exist.
	ErrNotFound = errors.New("not found")
	// ErrTargetExists means a target being added is already listed.
	ErrTargetExists = errors.New("target already exists")
	// ErrBadSignature means metadata is not signed by the keys the root requires.
	ErrBadSignature = errors.New("bad signature")
	// ErrVersion means metadata does not have the expected version.
	ErrVersion = errors.New("wrong version")
	// ErrTargetChanged means new targets metadata removes or modifies an existing target.
	ErrTargetChanged = errors.New("existing target removed or changed")
	// ErrExpired means metadata has expired.
	ErrExpired = errors.New("expired")
	// ErrWrongKey means an online key is not the one the root names for its role.
	ErrWrongKey = errors.New("key not trusted by root")
	// ErrUnauthorized means the server did not accept the client's credential (HTTP 401).
	ErrUnauthorized = errors.New("the server refused the credential")
	// ErrForbidden means the server knows the credential and denies access (HTTP 403), as for
	// a revoked agent.
	ErrForbidden = errors.New("the server denied access (revoked?)")
	// ErrHashMismatch means a downloaded target does not match its signed length and SHA-256.
	ErrHashMismatch = errors.New("target does not match its signed length and hash")
	// ErrNoChange means new targets metadata changes no target.
	ErrNoChange = errors.New("no target changed")
)

// Target is one TUF target file entry.
type Target struct {
	Name   string // TUF target path, e.g. "releases/stable/1.2.0/bundle"
	Length int64
	SHA256 [32]byte
	Custom json.RawMessage // may be nil
}

// file converts t to go-tuf's form.
func (t Target) file() *metadata.TargetFiles {
	tf := &metadata.TargetFiles{
		Length: t.Length,
		Hashes: metadata.Hashes{"sha256": slices.Clone(t.SHA256[:])},
		Path:   t.Name,
	}
	if t.Custom != nil {
		c := slices.Clone(t.Custom)
		tf.Custom = &c
	}
	return tf
}

// validName reports whether name is a clean, relative target path.
func validName(name string) bool {
	return fs.ValidPath(name) && name != "."
}

// toTargets converts go-tuf target entries to Targets in name order.
func toTargets(m map[string]*metadata.TargetFiles) ([]Target, error) {
	list := make([]Target, 0, len(m))
	for name, tf := range m {
		h := tf.Hashes["sha256"]
		if !validName(name) || len(h) != sha256.Size || tf.Length < 0 {
			return nil, fmt.Errorf("target %q: invalid name, length or sha256 hash", name)
		}
		t := Target{Name: name, Length: tf.Length}
		copy(t.SHA256[:], h)
		if tf.Custom != nil {
			t.Custom = slices.Clone(*tf.Custom)
		}
		list = append(list, t)
	}
	slices.SortFunc(list, func(a, b Target) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

// expires returns now+d in the whole-second UTC form TUF metadata uses.
func expires(now time.Time, d time.Duration) time.Time {
	return now.UTC().Add(d).Truncate(time.Second)
}

// parse decodes metadata of role T (no verification).
func parse[T metadata.Roles](b []byte) (*metadata.Metadata[T], error) {
	return (&metadata.Metadata[T]{}).FromBytes(b)
}

// sign signs m with each signer and returns its serialized form.
func sign[T metadata.Roles](m *metadata.Metadata[T], signers ...signature.Signer) ([]byte, error) {
	for _, s := range signers {
		if _, err := m.Sign(s); err != nil {
			return nil, err
		}
	}
	return m.ToBytes(false)
}

// newKey generates an ed25519 key, writes it to file as PKCS#8 PEM (0600)
// and returns a signer for it.
func newKey(file string) (signature.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if err := writeFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return signature.LoadSigner(priv, crypto.Hash(0))
}

// loadKey reads an ed25519 PKCS#8 PEM private key; errors name the file.
func loadKey(file string) (signature.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PRIVATE KEY PEM block", file)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ed25519 key", file)
	}
	return signature.LoadSigner(priv, crypto.Hash(0))
}

// publicKey returns the TUF key of signer s.
func publicKey(s signature.Signer) (*metadata.Key, error) {
	pub, err := s.PublicKey()
	if err != nil {
		return nil, err
	}
	return metadata.KeyFromPublicKey(pub)
}

// writeFile creates file (it must not exist) with exactly mode perm.
func writeFile(file string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm) // undo the umask
	}
	return errors.Join(err, f.Close())
}
