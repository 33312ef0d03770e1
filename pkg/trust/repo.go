package trust

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// MetaStore persists signed metadata files under the names TUF clients fetch
// them by: "1.root.json", "2.root.json", ..., "root.json" (latest root),
// "N.targets.json" and "targets.json" (latest), "N.snapshot.json" and
// "snapshot.json" (latest), "timestamp.json".
type MetaStore interface {
	GetMeta(name string) ([]byte, error)   // returns an error wrapping ErrNotFound when absent
	PutMeta(files map[string][]byte) error // stores all files atomically
}

// Online holds the seeder's snapshot and timestamp signers.
type Online struct {
	snapshot, timestamp onlineKey
}

type onlineKey struct {
	signature.Signer
	file, id string
}

// LoadOnline reads dir/keys/snapshot.pem and dir/keys/timestamp.pem.
func LoadOnline(dir string) (*Online, error) {
	snap, err := loadOnlineKey(dir, "snapshot.pem")
	if err != nil {
		return nil, err
	}
	ts, err := loadOnlineKey(dir, "timestamp.pem")
	if err != nil {
		return nil, err
	}
	return &Online{snapshot: snap, timestamp: ts}, nil
}

func loadOnlineKey(dir, file string) (onlineKey, error) {
	s, err := loadKey(filepath.Join(dir, "keys", file))
	if err != nil {
		return onlineKey{}, fmt.Errorf("load online key: %w", err)
	}
	key, err := publicKey(s)
	if err != nil {
		return onlineKey{}, fmt.Errorf("load online key: keys/%s: %w", file, err)
	}
	id, err := key.ID()
	if err != nil {
		return onlineKey{}, fmt.Errorf("load online key: keys/%s: %w", file, err)
	}
	return onlineKey{Signer: s, file: file, id: id}, nil
}

// Repo is the seeder's TUF repository. It is safe for concurrent use.
type Repo struct {
	mu        sync.Mutex
	store     MetaStore
	online    *Online
	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	roles     map[string]*metadata.Metadata[metadata.TargetsType] // delegated targets roles by name
	list      []Target                                            // top-level and delegated targets in name order
	changed   chan struct{}                                       // closed when the snapshot changes next (see Watch)
}

// OpenRepo opens the repository in store. If store is empty it bootstraps it
// from the deployment's dir/root.json and dir/targets.json (written by Init)
// and signs snapshot v1 and timestamp v1 with the online keys. It checks that
// the online keys are the ones the root names for snapshot and timestamp.
func OpenRepo(store MetaStore, online *Online, dir string, now time.Time) (*Repo, error) {
	if store == nil || online == nil {
		return nil, errors.New("open repository: store and online keys are required")
	}
	r := &Repo{store: store, online: online, roles: map[string]*metadata.Metadata[metadata.TargetsType]{}, changed: make(chan struct{})}
	_, err := store.GetMeta("timestamp.json")
	switch {
	case errors.Is(err, ErrNotFound):
		err = r.bootstrap(dir, now)
	case err == nil:
		err = r.load()
	}
	if err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	return r, nil
}

// load reads the current metadata from the store.
func (r *Repo) load() error {
	var err error
	if r.root, err = getMeta[metadata.RootType](r.store, "root.json"); err != nil {
		return err
	}
	if err := r.checkOnline(); err != nil {
		return err
	}
	if r.targets, err = getMeta[metadata.TargetsType](r.store, "targets.json"); err != nil {
		return err
	}
	if r.snapshot, err = getMeta[metadata.SnapshotType](r.store, "snapshot.json"); err != nil {
		return err
	}
	if r.timestamp, err = getMeta[metadata.TimestampType](r.store, "timestamp.json"); err != nil {
		return err
	}
	for name := range r.snapshot.Signed.Meta {
		role := strings.TrimSuffix(name, ".json")
		if name == "targets.json" || role == name {
			continue
		}
		if r.roles[role], err = getMeta[metadata.TargetsType](r.store, name); err != nil {
			return err
		}
	}
	if r.list, err = r.allTargets(); err != nil {
		return err
	}
	return nil
}

// allTargets lists the targets of the top-level and the delegated roles in name order. A name
// both list (the top-level targets took a delegated role's target over, such as an admin's
// rollout policy for a CI release) is the top-level one, as agents resolve it.
func (r *Repo) allTargets() ([]Target, error) {
	list, err := toTargets(r.targets.Signed.Targets)
	if err != nil {
		return nil, fmt.Errorf("targets.json: %w", err)
	}
	for name, m := range r.roles {
		l, err := toTargets(m.Signed.Targets)
		if err != nil {
			return nil, fmt.Errorf("%s.json: %w", name, err)
		}
		for _, t := range l {
			if _, top := r.targets.Signed.Targets[t.Name]; !top {
				list = append(list, t)
			}
		}
	}
	slices.SortFunc(list, func(a, b Target) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

// bootstrap fills an empty store from the deployment directory.
func (r *Repo) bootstrap(dir string, now time.Time) error {
	root, rootJSON, err := readRoot(dir)
	if err != nil {
		return err
	}
	r.root = root
	if err := r.checkOnline(); err != nil {
		return err
	}
	targetsJSON, err := os.ReadFile(filepath.Join(dir, "targets.json"))
	if err != nil {
		return fmt.Errorf("read targets metadata: %w", err)
	}
	targets, _, err := r.verifyTargets(targetsJSON, now)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		fmt.Sprintf("%d.root.json", root.Signed.Version): rootJSON,
		"root.json": rootJSON,
	}
	return r.commit(files, now, roleMeta{metadata.TARGETS, targets, targetsJSON})
}

// checkOnline checks that the online keys are the root's snapshot and timestamp keys.
func (r *Repo) checkOnline() error {
	for _, k := range []struct {
		role string
		key  onlineKey
	}{{metadata.SNAPSHOT, r.online.snapshot}, {metadata.TIMESTAMP, r.online.timestamp}} {
		if rr := r.root.Signed.Roles[k.role]; rr == nil || !slices.Contains(rr.KeyIDs, k.key.id) {
			return fmt.Errorf("keys/%s is not the root's %s key: %w", k.key.file, k.role, ErrWrongKey)
		}
	}
	return nil
}

// verifyTargets parses signed targets metadata and checks its signatures and expiry.
func (r *Repo) verifyTargets(b []byte, now time.Time) (*metadata.Metadata[metadata.TargetsType], []Target, error) {
	t, err := parse[metadata.TargetsType](b)
	if err != nil {
		return nil, nil, fmt.Errorf("parse targets metadata: %w", err)
	}
	if err := r.root.VerifyDelegate(metadata.TARGETS, t); err != nil {
		return nil, nil, fmt.Errorf("verify targets metadata: %w: %w", ErrBadSignature, err)
	}
	if t.Signed.IsExpired(now) {
		return nil, nil, fmt.Errorf("verify targets metadata: %w: expired at %s", ErrExpired, t.Signed.Expires.Format(time.RFC3339))
	}
	list, err := toTargets(t.Signed.Targets)
	if err != nil {
		return nil, nil, fmt.Errorf("verify targets metadata: %w", err)
	}
	return t, list, nil
}

// Publish verifies signedTargets (signed by the root's targets role, version
// current+1, not expired, every existing target present and unchanged), then
// signs a new snapshot and timestamp, stores all in one PutMeta and returns
// the targets that were added. Concurrent calls are serialized.
func (r *Repo) Publish(signedTargets []byte, now time.Time) ([]Target, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, list, err := r.verifyTargets(signedTargets, now)
	if err != nil {
		return nil, fmt.Errorf("publish targets: %w", err)
	}
	if want := r.targets.Signed.Version + 1; t.Signed.Version != want {
		return nil, fmt.Errorf("publish targets: %w: expected version %d, got %d", ErrVersion, want, t.Signed.Version)
	}
	if err := keptTargets(r.targets.Signed.Targets, t.Signed.Targets); err != nil {
		return nil, fmt.Errorf("publish targets: %w", err)
	}
	var added []Target
	for _, tg := range list {
		if _, ok := r.targets.Signed.Targets[tg.Name]; !ok {
			added = append(added, tg)
		}
	}
	if err := r.commit(map[string][]byte{}, now, roleMeta{metadata.TARGETS, t, signedTargets}); err != nil {
		return nil, fmt.Errorf("publish targets: %w", err)
	}
	return added, nil
}

// keptTargets checks that every target of old is in new, unchanged.
func keptTargets(old, new map[string]*metadata.TargetFiles) error {
	for name, of := range old {
		nf, ok := new[name]
		if !ok {
			return fmt.Errorf("%q removed: %w", name, ErrTargetChanged)
		}
		ob, err1 := json.Marshal(of)
		nb, err2 := json.Marshal(nf)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if !bytes.Equal(ob, nb) {
			return fmt.Errorf("%q modified: %w", name, ErrTargetChanged)
		}
	}
	return nil
}

// roleMeta is new signed metadata of a targets role ("targets" or a delegated role).
type roleMeta struct {
	name string
	m    *metadata.Metadata[metadata.TargetsType]
	b    []byte
}

// commit adds the roles' metadata, a new snapshot and a new timestamp to files, stores
// them and makes them current.
func (r *Repo) commit(files map[string][]byte, now time.Time, roles ...roleMeta) error {
	meta := map[string]*metadata.MetaFiles{}
	if r.snapshot != nil {
		maps.Copy(meta, r.snapshot.Signed.Meta)
	}
	for _, rm := range roles {
		files[fmt.Sprintf("%d.%s.json", rm.m.Signed.Version, rm.name)] = rm.b
		files[rm.name+".json"] = rm.b
		meta[rm.name+".json"] = metaFile(rm.m.Signed.Version, rm.b)
	}
	snap, snapMeta, err := r.newSnapshot(files, meta, now)
	if err != nil {
		return err
	}
	ts, err := r.newTimestamp(files, snapMeta, now)
	if err != nil {
		return err
	}
	oldTargets, oldRoles := r.targets, maps.Clone(r.roles)
	for _, rm := range roles {
		if rm.name == metadata.TARGETS {
			r.targets = rm.m
		} else {
			r.roles[rm.name] = rm.m
		}
	}
	list, err := r.allTargets()
	if err == nil {
		err = r.store.PutMeta(files)
	}
	if err != nil {
		r.targets, r.roles = oldTargets, oldRoles
		return fmt.Errorf("store metadata: %w", err)
	}
	r.snapshot, r.timestamp, r.list = snap, ts, list
	r.notifyLocked()
	return nil
}

// Refresh re-signs the timestamp (and the snapshot) when less than half of
// its lifetime remains at now. It reports whether anything changed.
func (r *Repo) Refresh(now time.Time) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	files := map[string][]byte{}
	snap, snapMeta := r.snapshot, r.timestamp.Signed.Meta["snapshot.json"]
	if aging(snap.Signed.Expires, SnapshotExpiry, now) {
		var err error
		if snap, snapMeta, err = r.newSnapshot(files, r.snapshot.Signed.Meta, now); err != nil {
			return false, fmt.Errorf("refresh repository: %w", err)
		}
	}
	if len(files) == 0 && !aging(r.timestamp.Signed.Expires, TimestampExpiry, now) {
		return false, nil
	}
	ts, err := r.newTimestamp(files, snapMeta, now)
	if err != nil {
		return false, fmt.Errorf("refresh repository: %w", err)
	}
	if err := r.store.PutMeta(files); err != nil {
		return false, fmt.Errorf("refresh repository: store metadata: %w", err)
	}
	r.snapshot, r.timestamp = snap, ts
	r.notifyLocked()
	return true, nil
}

// Watch returns the version of the current snapshot metadata and a channel that is closed when
// the metadata changes next (a publish, a rollout change, a rotation, a re-signed timestamp).
func (r *Repo) Watch() (int64, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshot.Signed.Version, r.changed
}

// notifyLocked wakes the watchers of the metadata; r.mu is held.
func (r *Repo) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// SnapshotVersion is the version of the current snapshot metadata.
func (r *Repo) SnapshotVersion() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshot.Signed.Version
}

// Targets returns the current targets in name order.
func (r *Repo) Targets() []Target {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}

// newSnapshot signs the next snapshot listing meta (every targets role's file), adds it to
// files and returns it with its entry for the timestamp.
func (r *Repo) newSnapshot(files map[string][]byte, meta map[string]*metadata.MetaFiles, now time.Time) (*metadata.Metadata[metadata.SnapshotType], *metadata.MetaFiles, error) {
	s := metadata.Snapshot(expires(now, SnapshotExpiry))
	if r.snapshot != nil {
		s.Signed.Version = r.snapshot.Signed.Version + 1
	}
	s.Signed.Meta = maps.Clone(meta)
	b, err := sign(s, r.online.snapshot)
	if err != nil {
		return nil, nil, fmt.Errorf("sign snapshot metadata: %w", err)
	}
	files[fmt.Sprintf("%d.snapshot.json", s.Signed.Version)] = b
	files["snapshot.json"] = b
	return s, metaFile(s.Signed.Version, b), nil
}

// newTimestamp signs the next timestamp listing snapMeta and adds it to files.
func (r *Repo) newTimestamp(files map[string][]byte, snapMeta *metadata.MetaFiles, now time.Time) (*metadata.Metadata[metadata.TimestampType], error) {
	t := metadata.Timestamp(expires(now, TimestampExpiry))
	if r.timestamp != nil {
		t.Signed.Version = r.timestamp.Signed.Version + 1
	}
	t.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": snapMeta}
	b, err := sign(t, r.online.timestamp)
	if err != nil {
		return nil, fmt.Errorf("sign timestamp metadata: %w", err)
	}
	files["timestamp.json"] = b
	return t, nil
}

// metaFile describes a metadata file by version, length and SHA-256.
func metaFile(version int64, b []byte) *metadata.MetaFiles {
	h := sha256.Sum256(b)
	return &metadata.MetaFiles{Version: version, Length: int64(len(b)), Hashes: metadata.Hashes{"sha256": h[:]}}
}

// aging reports whether less than half of lifetime remains before exp at now.
func aging(exp time.Time, lifetime time.Duration, now time.Time) bool {
	return exp.Sub(now) < lifetime/2
}

// getMeta reads and parses metadata file name from s.
func getMeta[T metadata.Roles](s MetaStore, name string) (*metadata.Metadata[T], error) {
	b, err := s.GetMeta(name)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	m, err := parse[T](b)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, err)
	}
	return m, nil
}
