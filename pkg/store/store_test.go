package store

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestPutGetSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct{ Version string }
	if err := db.Put(State, "installed/stable", rec{"1.2.0"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got rec
	if err := db.Get(State, "installed/stable", &got); err != nil || got.Version != "1.2.0" {
		t.Fatalf("Get = %+v, %v; want 1.2.0", got, err)
	}
	if err := db.Get(State, "missing", &got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing: %v, want ErrNotFound", err)
	}
}

func TestOpenTwiceIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Open(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestUpdateIsAtomic(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Put(State, "a", 1); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err = db.Update(State, func(get, put func(string, any) error) error {
		if err := put("a", 2); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update: %v, want boom", err)
	}
	var a int
	if err := db.Get(State, "a", &a); err != nil || a != 1 {
		t.Fatalf("a = %d, %v; want 1 (failed update must write nothing)", a, err)
	}
}
