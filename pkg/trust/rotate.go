package trust

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// RotateKeyFiles names, for each role RotateKey rotates, the key file under dir/keys that it
// replaces. A root rotation replaces one of the three root keys, root-1.pem.
var RotateKeyFiles = map[string]string{
	metadata.ROOT:      "root-1.pem",
	metadata.TARGETS:   "targets.pem",
	metadata.SNAPSHOT:  "snapshot.pem",
	metadata.TIMESTAMP: "timestamp.pem",
}

// Rotation is a key rotation prepared by RotateKey: the new key is in place under dir/keys,
// the old one kept beside it, and the new metadata signed. Commit or Abort it once the
// seeder has answered.
type Rotation struct {
	Role    string
	Root    []byte // new root metadata, version current+1
	Targets []byte // for a targets rotation, the current targets re-signed at version+1; else nil
	Version int64  // of Root
	KeyFile string // the new key (dir/keys/<name>.pem)
	OldFile string // the old key (dir/keys/<name>.pem.old-<unix time>)
	dir     string
}

// RotateKey is the admin side of a key rotation. currentRoot and currentTargets are the
// root.json and targets.json the seeder serves now (untrusted bytes): currentRoot must be
// dir/root.json's version and signed by it; currentTargets must be signed by its targets role.
// RotateKey renames the role's key file (RotateKeyFiles) to <file>.old-<now as unix time>
// (keeping mode 0600), writes a new ed25519 key in its place and returns root version N+1
// that names the new key for role instead of the old one, signed by every root key found in
// dir/keys (for a root rotation the old and the new root-1 key both sign, so the new root
// carries a threshold of the old root's keys and of its own). For a targets rotation it also
// re-signs currentTargets with the new key at version+1. On error nothing is left changed.
func RotateKey(dir, role string, currentRoot, currentTargets []byte, now time.Time) (_ *Rotation, err error) {
	file, ok := RotateKeyFiles[role]
	if !ok {
		return nil, fmt.Errorf("rotate key: role %q: want root, targets, snapshot or timestamp", role)
	}
	trusted, _, err := readRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("rotate %s key: %w", role, err)
	}
	cur, err := parse[metadata.RootType](currentRoot)
	if err != nil {
		return nil, fmt.Errorf("rotate %s key: parse the seeder's root metadata: %w", role, err)
	}
	if cur.Signed.Version != trusted.Signed.Version {
		return nil, fmt.Errorf("rotate %s key: %w: the seeder serves root version %d, %s is version %d (rotate from the deployment directory of the last rotation)",
			role, ErrVersion, cur.Signed.Version, filepath.Join(dir, "root.json"), trusted.Signed.Version)
	}
	if err := trusted.VerifyDelegate(metadata.ROOT, cur); err != nil {
		return nil, fmt.Errorf("rotate %s key: the seeder's root metadata: %w: %w", role, ErrBadSignature, err)
	}
	var targets *metadata.Metadata[metadata.TargetsType]
	if role == metadata.TARGETS {
		if targets, err = parse[metadata.TargetsType](currentTargets); err != nil {
			return nil, fmt.Errorf("rotate targets key: parse current targets metadata: %w", err)
		}
		if err := cur.VerifyDelegate(metadata.TARGETS, targets); err != nil {
			return nil, fmt.Errorf("rotate targets key: verify current targets metadata: %w: %w", ErrBadSignature, err)
		}
	}

	keys := filepath.Join(dir, "keys")
	path := filepath.Join(keys, file)
	oldSigner, err := loadKey(path)
	if err != nil {
		return nil, fmt.Errorf("rotate %s key: %w", role, err)
	}
	oldID, err := keyID(oldSigner)
	if err != nil {
		return nil, fmt.Errorf("rotate %s key: keys/%s: %w", role, file, err)
	}
	if !slices.Contains(cur.Signed.Roles[role].KeyIDs, oldID) {
		return nil, fmt.Errorf("rotate %s key: keys/%s is not the root's %s key: %w", role, file, role, ErrWrongKey)
	}
	signers, err := rootSigners(keys, cur)
	if err != nil {
		return nil, fmt.Errorf("rotate %s key: %w", role, err)
	}

	rot := &Rotation{Role: role, KeyFile: path, OldFile: fmt.Sprintf("%s.old-%d", path, now.Unix()), dir: dir}
	if _, err := os.Lstat(rot.OldFile); err == nil {
		return nil, fmt.Errorf("rotate %s key: %s: %w", role, rot.OldFile, fs.ErrExist)
	}
	if err := os.Rename(path, rot.OldFile); err != nil {
		return nil, fmt.Errorf("rotate %s key: keep the old key: %w", role, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, rot.Abort())
		}
	}()
	newSigner, err := newKey(path)
	if err != nil {
		return nil, fmt.Errorf("rotate %s key: create keys/%s: %w", role, file, err)
	}
	newPub, err := publicKey(newSigner)
	if err != nil {
		return nil, fmt.Errorf("rotate %s key: %w", role, err)
	}

	root, err := parse[metadata.RootType](currentRoot)
	if err != nil {
		return nil, fmt.Errorf("rotate %s key: %w", role, err)
	}
	if err := root.Signed.RevokeKey(oldID, role); err != nil {
		return nil, fmt.Errorf("rotate %s key: drop the old key: %w", role, err)
	}
	if err := root.Signed.AddKey(newPub, role); err != nil {
		return nil, fmt.Errorf("rotate %s key: add the new key: %w", role, err)
	}
	root.Signed.Version++
	root.Signed.Expires = expires(now, RootExpiry)
	root.ClearSignatures()
	if role == metadata.ROOT {
		signers = append(signers, newSigner)
	}
	if rot.Root, err = sign(root, signers...); err != nil {
		return nil, fmt.Errorf("rotate %s key: sign root metadata: %w", role, err)
	}
	if err := verifyNextRoot(cur, root); err != nil {
		return nil, fmt.Errorf("rotate %s key: not enough root keys in %s: %w", role, keys, err)
	}
	rot.Version = root.Signed.Version

	if targets != nil {
		targets.Signed.Version++
		targets.Signed.Expires = expires(now, TargetsExpiry)
		targets.ClearSignatures()
		if rot.Targets, err = sign(targets, newSigner); err != nil {
			return nil, fmt.Errorf("rotate targets key: sign targets metadata: %w", err)
		}
		if err := root.VerifyDelegate(metadata.TARGETS, targets); err != nil {
			return nil, fmt.Errorf("rotate targets key: %w: %w", ErrBadSignature, err)
		}
	}
	return rot, nil
}

// Commit makes the rotation final on the admin's side once the seeder has accepted it: it
// replaces dir/root.json with the new root (agents installed with either root follow the
// chain the seeder serves).
func (r *Rotation) Commit() error {
	tmp := filepath.Join(r.dir, fmt.Sprintf(".root.json.%d", r.Version))
	os.Remove(tmp)
	if err := writeFile(tmp, r.Root, 0o644); err != nil {
		return fmt.Errorf("write root metadata: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(r.dir, "root.json")); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write root metadata: %w", err)
	}
	return nil
}

// Abort undoes the rotation on the admin's side: the old key file goes back in place.
func (r *Rotation) Abort() error {
	if err := os.Remove(r.KeyFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("undo key rotation: %w", err)
	}
	if err := os.Rename(r.OldFile, r.KeyFile); err != nil {
		return fmt.Errorf("undo key rotation: %w", err)
	}
	return nil
}

// rootSigners loads every root-*.pem under keys that root names for its root role.
func rootSigners(keys string, root *metadata.Metadata[metadata.RootType]) ([]signature.Signer, error) {
	files, err := filepath.Glob(filepath.Join(keys, "root-*.pem"))
	if err != nil {
		return nil, err
	}
	var signers []signature.Signer
	for _, f := range files {
		s, err := loadKey(f)
		if err != nil {
			return nil, err
		}
		id, err := keyID(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if slices.Contains(root.Signed.Roles[metadata.ROOT].KeyIDs, id) {
			signers = append(signers, s)
		}
	}
	if n := root.Signed.Roles[metadata.ROOT].Threshold; len(signers) < n {
		return nil, fmt.Errorf("%d of the root's keys in %s, the root threshold is %d: %w", len(signers), keys, n, ErrBadSignature)
	}
	return signers, nil
}

// keyID is the TUF key id of signer s.
func keyID(s signature.Signer) (string, error) {
	k, err := publicKey(s)
	if err != nil {
		return "", err
	}
	return k.ID()
}

// verifyNextRoot checks next as the successor of trusted, as TUF clients do: version
// trusted+1, signed by a threshold of trusted's root keys and by a threshold of its own.
func verifyNextRoot(trusted, next *metadata.Metadata[metadata.RootType]) error {
	if want := trusted.Signed.Version + 1; next.Signed.Version != want {
		return fmt.Errorf("%w: expected root version %d, got %d", ErrVersion, want, next.Signed.Version)
	}
	if err := trusted.VerifyDelegate(metadata.ROOT, next); err != nil {
		return fmt.Errorf("%w: root version %d is not signed by a threshold of the keys of root version %d: %w",
			ErrBadSignature, next.Signed.Version, trusted.Signed.Version, err)
	}
	if err := next.VerifyDelegate(metadata.ROOT, next); err != nil {
		return fmt.Errorf("%w: root version %d is not signed by a threshold of its own root keys: %w",
			ErrBadSignature, next.Signed.Version, err)
	}
	return nil
}

// Rotate installs root version N+1 (a key rotation made by RotateKey). newRoot must be signed
// by a threshold of the current root's keys and by a threshold of its own, keep consistent
// snapshots and not be expired. newTargets, if not nil, must be the current targets
// unchanged, re-signed under the new root at version current+1; if nil the current targets
// must still verify under the new root. online are the online keys from now on (nil: keep the
// current ones); the new root must name them. Rotate stores N.root.json and root.json (and the
// targets), and signs a new snapshot and timestamp with the online keys, in one PutMeta.
func (r *Repo) Rotate(newRoot, newTargets []byte, online *Online, now time.Time) (err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	root, err := parse[metadata.RootType](newRoot)
	if err != nil {
		return fmt.Errorf("rotate: parse root metadata: %w", err)
	}
	if err := verifyNextRoot(r.root, root); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	if root.Signed.IsExpired(now) {
		return fmt.Errorf("rotate: root metadata: %w: expired at %s", ErrExpired, root.Signed.Expires.Format(time.RFC3339))
	}
	if !root.Signed.ConsistentSnapshot {
		return errors.New("rotate: root metadata turns consistent snapshots off")
	}
	if online == nil {
		online = r.online
	}
	oldRoot, oldOnline := r.root, r.online
	r.root, r.online = root, online
	defer func() {
		if err != nil {
			r.root, r.online = oldRoot, oldOnline
		}
	}()
	if err = r.checkOnline(); err != nil {
		return fmt.Errorf("rotate: %w (copy the new online keys into the seeder's --keys directory first)", err)
	}
	files := map[string][]byte{
		fmt.Sprintf("%d.root.json", root.Signed.Version): newRoot,
		"root.json": newRoot,
	}
	if newTargets == nil {
		if err = root.VerifyDelegate(metadata.TARGETS, r.targets); err != nil {
			return fmt.Errorf("rotate: the current targets metadata does not verify under the new root (re-signed targets are required): %w: %w", ErrBadSignature, err)
		}
		// Re-sign snapshot and timestamp (perhaps with new keys) over the same targets.
		snap, snapMeta, err := r.newSnapshot(files, r.snapshot.Signed.Meta, now)
		if err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		ts, err := r.newTimestamp(files, snapMeta, now)
		if err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		if err = r.store.PutMeta(files); err != nil {
			return fmt.Errorf("rotate: store metadata: %w", err)
		}
		r.snapshot, r.timestamp = snap, ts
		r.notifyLocked()
		return nil
	}
	t, _, err := r.verifyTargets(newTargets, now)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	if want := r.targets.Signed.Version + 1; t.Signed.Version != want {
		err = fmt.Errorf("rotate: targets: %w: expected version %d, got %d", ErrVersion, want, t.Signed.Version)
		return err
	}
	if !sameTargets(r.targets.Signed.Targets, t.Signed.Targets) {
		err = fmt.Errorf("rotate: re-signed targets differ from the current ones: %w", ErrTargetChanged)
		return err
	}
	if err = r.commit(files, now, roleMeta{metadata.TARGETS, t, newTargets}); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	return nil
}

// sameTargets reports whether a and b list the same targets with the same entries.
func sameTargets(a, b map[string]*metadata.TargetFiles) bool {
	if len(a) != len(b) {
		return false
	}
	for name, ta := range a {
		tb, ok := b[name]
		if !ok {
			return false
		}
		ja, err1 := json.Marshal(ta)
		jb, err2 := json.Marshal(tb)
		if err1 != nil || err2 != nil || !bytes.Equal(ja, jb) {
			return false
		}
	}
	return true
}
