// Package store keeps Peerpatch's local state in a bbolt file: on the seeder what is published,
// the TUF metadata and the agents' last reports; on an agent its identity, what it downloads,
// what it installed and the highest version it ever trusted. Values are JSON; every write is
// one transaction, so a killed process leaves the previous state or the new one, never a mix.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sentinel errors.
var (
	// ErrNotFound: no value under that key.
	ErrNotFound = errors.New("not found")
	// ErrLocked: another process has the state file open.
	ErrLocked = errors.New("state file is in use by another process")
)

// Buckets. Each holds JSON values (raw bytes for Meta) under string keys.
const (
	Releases = "releases" // seeder: "<channel>/<version>" → release record
	Meta     = "tuf"      // seeder: TUF metadata file name → signed bytes
	Agents   = "agents"   // seeder: agent id → last report
	Enrolled = "enrolled" // seeder: agent id → credential hash, enrolment and revocation
	State    = "state"    // agent: identity, installed and trusted versions
)

var buckets = []string{Releases, Meta, Agents, Enrolled, State}

// DB is an open state file.
type DB struct {
	db   *bolt.DB
	path string
}

// Open opens (creating if needed, mode 0600) the state file at path.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open state %q: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open state %q: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open state %q: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open state %q: %w", path, err)
	}
	return &DB{db: db, path: path}, nil
}

// Close closes the file.
func (d *DB) Close() error { return d.db.Close() }

// Get decodes the JSON value at bucket/key into v.
func (d *DB) Get(bucket, key string, v any) error {
	raw, err := d.GetRaw(bucket, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode %s/%s in %q: %w", bucket, key, d.path, err)
	}
	return nil
}

// GetRaw returns a copy of the bytes at bucket/key.
func (d *DB) GetRaw(bucket, key string) ([]byte, error) {
	var out []byte
	err := d.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucket)).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("%s/%s: %w", bucket, key, ErrNotFound)
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// Put stores v as JSON at bucket/key.
func (d *DB) Put(bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	return d.PutRaw(bucket, map[string][]byte{key: raw})
}

// PutRaw stores all the given keys in one transaction.
func (d *DB) PutRaw(bucket string, kv map[string][]byte) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		for k, v := range kv {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %s in %q: %w", bucket, d.path, err)
	}
	return nil
}

// Update runs fn in one write transaction over bucket: fn reads with get and writes with put;
// if fn returns an error nothing is written.
func (d *DB) Update(bucket string, fn func(get func(key string, v any) error, put func(key string, v any) error) error) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		get := func(key string, v any) error {
			raw := b.Get([]byte(key))
			if raw == nil {
				return fmt.Errorf("%s/%s: %w", bucket, key, ErrNotFound)
			}
			return json.Unmarshal(raw, v)
		}
		put := func(key string, v any) error {
			raw, err := json.Marshal(v)
			if err != nil {
				return err
			}
			return b.Put([]byte(key), raw)
		}
		return fn(get, put)
	})
	if err != nil {
		return fmt.Errorf("update %s in %q: %w", bucket, d.path, err)
	}
	return nil
}

// ForEach calls fn for every key of bucket in key order with its raw value (valid only during
// the call).
func (d *DB) ForEach(bucket string, fn func(key string, raw []byte) error) error {
	return d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucket)).ForEach(func(k, v []byte) error { return fn(string(k), v) })
	})
}

// Delete removes bucket/key; a missing key is not an error.
func (d *DB) Delete(bucket, key string) error {
	return d.db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte(bucket)).Delete([]byte(key)) })
}
