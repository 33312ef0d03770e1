package trust

import (
	"fmt"
	"slices"
	"sync"
)

// MemStore is an in-memory MetaStore, for tests.
type MemStore struct {
	mu    sync.RWMutex
	files map[string][]byte
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{files: map[string][]byte{}}
}

// GetMeta returns a copy of file name, or an error wrapping ErrNotFound.
func (s *MemStore) GetMeta(name string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.files[name]
	if !ok {
		return nil, fmt.Errorf("get metadata %s: %w", name, ErrNotFound)
	}
	return slices.Clone(b), nil
}

// PutMeta stores copies of all files at once.
func (s *MemStore) PutMeta(files map[string][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, b := range files {
		s.files[name] = slices.Clone(b)
	}
	return nil
}
