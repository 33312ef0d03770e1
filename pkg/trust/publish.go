package trust

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Init creates a deployment in dir, which must already exist:
//
//	dir/root.json        root metadata v1 (0644), the trust anchor agents install;
//	                     root threshold 2 of 3, consistent snapshots
//	dir/targets.json     targets metadata v1 without targets (0644)
//	dir/keys/root-{1,2,3}.pem, targets.pem, snapshot.pem, timestamp.pem
//	                     ed25519 private keys, PKCS#8 PEM (0600)
//
// Init fails if dir/root.json or dir/keys exists.
func Init(dir string, now time.Time) error {
	keys := filepath.Join(dir, "keys")
	for _, p := range []string{filepath.Join(dir, "root.json"), keys} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("init deployment: %s: %w", p, fs.ErrExist)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("init deployment: %w", err)
		}
	}
	if err := os.Mkdir(keys, 0o700); err != nil {
		return fmt.Errorf("init deployment: %w", err)
	}

	root := metadata.Root(expires(now, RootExpiry))
	root.Signed.ConsistentSnapshot = true
	root.Signed.Roles[metadata.ROOT].Threshold = 2
	signers := map[string]signature.Signer{}
	for _, k := range []struct{ file, role string }{
		{"root-1.pem", metadata.ROOT}, {"root-2.pem", metadata.ROOT}, {"root-3.pem", metadata.ROOT},
		{"targets.pem", metadata.TARGETS}, {"snapshot.pem", metadata.SNAPSHOT}, {"timestamp.pem", metadata.TIMESTAMP},
	} {
		s, err := newKey(filepath.Join(keys, k.file))
		if err != nil {
			return fmt.Errorf("init deployment: create keys/%s: %w", k.file, err)
		}
		key, err := publicKey(s)
		if err == nil {
			err = root.Signed.AddKey(key, k.role)
		}
		if err != nil {
			return fmt.Errorf("init deployment: add keys/%s to root: %w", k.file, err)
		}
		signers[k.file] = s
	}

	rootJSON, err := sign(root, signers["root-1.pem"], signers["root-2.pem"], signers["root-3.pem"])
	if err != nil {
		return fmt.Errorf("init deployment: sign root metadata: %w", err)
	}
	targetsJSON, err := sign(metadata.Targets(expires(now, TargetsExpiry)), signers["targets.pem"])
	if err != nil {
		return fmt.Errorf("init deployment: sign targets metadata: %w", err)
	}
	if err := writeFile(filepath.Join(dir, "targets.json"), targetsJSON, 0o644); err != nil {
		return fmt.Errorf("init deployment: %w", err)
	}
	if err := writeFile(filepath.Join(dir, "root.json"), rootJSON, 0o644); err != nil {
		return fmt.Errorf("init deployment: %w", err)
	}
	return nil
}

// AddTargets is the publisher side. current is the targets.json the seeder
// serves now (untrusted bytes): it must be signed by the targets role of
// dir/root.json. AddTargets refuses a target of add whose name is already
// listed (ErrTargetExists), keeps the existing targets unchanged, appends add,
// sets version = current+1 and expires = now+TargetsExpiry, signs with
// dir/keys/targets.pem and returns the new signed targets.json.
func AddTargets(dir string, current []byte, add []Target, now time.Time) ([]byte, error) {
	root, _, err := readRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("add targets: %w", err)
	}
	targets, err := parse[metadata.TargetsType](current)
	if err != nil {
		return nil, fmt.Errorf("add targets: parse current targets metadata: %w", err)
	}
	if err := root.VerifyDelegate(metadata.TARGETS, targets); err != nil {
		return nil, fmt.Errorf("add targets: verify current targets metadata: %w: %w", ErrBadSignature, err)
	}
	for _, t := range add {
		if !validName(t.Name) || t.Length < 0 || (t.Custom != nil && !json.Valid(t.Custom)) {
			return nil, fmt.Errorf("add targets: target %q: invalid name, length or custom JSON", t.Name)
		}
		if _, ok := targets.Signed.Targets[t.Name]; ok {
			return nil, fmt.Errorf("add targets: %q: %w", t.Name, ErrTargetExists)
		}
		targets.Signed.Targets[t.Name] = t.file()
	}
	targets.Signed.Version++
	targets.Signed.Expires = expires(now, TargetsExpiry)
	targets.ClearSignatures()

	file := filepath.Join(dir, "keys", "targets.pem")
	signer, err := loadKey(file)
	if err != nil {
		return nil, fmt.Errorf("add targets: load targets key: %w", err)
	}
	b, err := sign(targets, signer)
	if err != nil {
		return nil, fmt.Errorf("add targets: sign targets metadata: %w", err)
	}
	if err := root.VerifyDelegate(metadata.TARGETS, targets); err != nil {
		return nil, fmt.Errorf("add targets: %s is not the root's targets key: %w", file, ErrWrongKey)
	}
	return b, nil
}

// ReadTargets parses targets.json bytes (without verifying them) and returns
// its version and targets in name order.
func ReadTargets(b []byte) (version int64, targets []Target, err error) {
	m, err := parse[metadata.TargetsType](b)
	if err != nil {
		return 0, nil, fmt.Errorf("read targets metadata: %w", err)
	}
	targets, err = toTargets(m.Signed.Targets)
	if err != nil {
		return 0, nil, fmt.Errorf("read targets metadata: %w", err)
	}
	return m.Signed.Version, targets, nil
}

// readRoot reads and self-verifies dir/root.json.
func readRoot(dir string) (*metadata.Metadata[metadata.RootType], []byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if err != nil {
		return nil, nil, fmt.Errorf("read root metadata: %w", err)
	}
	root, err := parse[metadata.RootType](b)
	if err != nil {
		return nil, nil, fmt.Errorf("read root metadata: %w", err)
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		return nil, nil, fmt.Errorf("verify root metadata: %w: %w", ErrBadSignature, err)
	}
	return root, b, nil
}
