package verify

import (
	"bytes"
	"context"
	"crypto/rand"
	stdsha256 "crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDigestText(t *testing.T) {
	want := Digest(stdsha256.Sum256([]byte("abc")))
	hexWant := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := want.String(); got != hexWant {
		t.Fatalf("String() = %s, want %s", got, hexWant)
	}
	tests := []struct {
		name    string
		in      string
		want    Digest
		wantErr bool
	}{
		{name: "lower", in: hexWant, want: want},
		{name: "upper", in: strings.ToUpper(hexWant), want: want},
		{name: "empty", in: "", wantErr: true},
		{name: "short", in: hexWant[:62], wantErr: true},
		{name: "long", in: hexWant + "00", wantErr: true},
		{name: "not hex", in: "zz" + hexWant[2:], wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDigest(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidDigest) {
					t.Fatalf("ParseDigest(%q) error = %v, want ErrInvalidDigest", tt.in, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseDigest(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}

	b, err := json.Marshal(struct{ D Digest }{want})
	if err != nil || string(b) != `{"D":"`+hexWant+`"}` {
		t.Fatalf("json.Marshal = %s, %v", b, err)
	}
	var back struct{ D Digest }
	if err := json.Unmarshal(b, &back); err != nil || back.D != want {
		t.Fatalf("json.Unmarshal = %s, %v", back.D, err)
	}
}

func TestSumAndFile(t *testing.T) {
	data := randBytes(t, 3*bufSize+17)
	path := writeFile(t, t.TempDir(), "f", data)
	want := Digest(stdsha256.Sum256(data))
	if got := Sum(data); got != want {
		t.Fatalf("Sum = %s, want %s", got, want)
	}
	h := New()
	h.Write(data)
	if got := Digest(h.Sum(nil)); got != want {
		t.Fatalf("New().Sum = %s, want %s", got, want)
	}
	got, n, err := File(path)
	if err != nil || got != want || n != int64(len(data)) {
		t.Fatalf("File = %s, %d, %v; want %s, %d", got, n, err, want, len(data))
	}
	if _, _, err := File(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("File(missing) error = %v, want ErrNotExist", err)
	}
}

func TestTree(t *testing.T) {
	dir := t.TempDir()
	a := randBytes(t, 2*bufSize+5)
	b := []byte{}
	c := randBytes(t, 1000)
	entries := []Entry{
		{Path: "bin/a", Src: writeFile(t, dir, "a", a), Length: int64(len(a)), SHA256: Sum(a)},
		{Path: "empty", Src: writeFile(t, dir, "b", b), Length: 0, SHA256: Sum(b)},
		{Path: "lib/c", Src: writeFile(t, dir, "c", c), Length: int64(len(c)), SHA256: Sum(c)},
	}
	all := append(append(append([]byte{}, a...), b...), c...)
	bundle := Sum(all)
	longer := writeFile(t, dir, "longer", append(append([]byte{}, c...), 'x'))

	tests := []struct {
		name     string
		change   func(es []Entry) // modifies a copy of entries
		bundle   Digest
		wantPath string // "" with wantMismatch means the bundle
		wantMsg  string
		wantErr  error // a non-mismatch error
	}{
		{name: "ok", bundle: bundle},
		{name: "ok without bundle"},
		{name: "bundle mismatch", bundle: Sum([]byte("x")), wantMsg: "bundle: SHA-256 mismatch"},
		{name: "digest mismatch", change: func(es []Entry) { es[2].SHA256 = Sum(nil) }, wantPath: "lib/c", wantMsg: `file "lib/c": SHA-256 mismatch`},
		{name: "shorter than length", change: func(es []Entry) { es[2].Length++ }, wantPath: "lib/c", wantMsg: `file "lib/c": length 1000, want 1001`},
		{name: "longer than length", change: func(es []Entry) { es[2].Src = longer }, wantPath: "lib/c", wantMsg: `file "lib/c": length 1001, want 1000`},
		{name: "missing source", change: func(es []Entry) { es[1].Src = filepath.Join(dir, "missing") }, wantErr: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := append([]Entry{}, entries...)
			if tt.change != nil {
				tt.change(es)
			}
			err := Tree(context.Background(), es, tt.bundle)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Tree error = %v, want %v", err, tt.wantErr)
				}
			case tt.wantMsg != "":
				var me *MismatchError
				if !errors.As(err, &me) || me.Path != tt.wantPath || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("Tree error = %v, want mismatch %q", err, tt.wantMsg)
				}
				if !errors.Is(err, ErrMismatch) {
					t.Fatalf("errors.Is(%v, ErrMismatch) = false", err)
				}
			case err != nil:
				t.Fatalf("Tree: %v", err)
			}
		})
	}
}

func TestTreeCopy(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	a, c := randBytes(t, bufSize+1), randBytes(t, 10)
	entries := []Entry{
		{Path: "a", Src: writeFile(t, dir, "a", a), Dst: filepath.Join(out, "x", "a"), Length: int64(len(a)), SHA256: Sum(a)},
		{Path: "c", Src: writeFile(t, dir, "c", c), Dst: filepath.Join(out, "y", "z", "c"), Length: int64(len(c)), SHA256: Sum(c)},
	}
	if err := Tree(context.Background(), entries, Sum(append(append([]byte{}, a...), c...))); err != nil {
		t.Fatalf("Tree: %v", err)
	}
	for i, want := range [][]byte{a, c} {
		got, err := os.ReadFile(entries[i].Dst)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("copy %s: %d bytes, %v; want %d bytes", entries[i].Dst, len(got), err, len(want))
		}
	}

	// Existing destinations are never overwritten.
	if err := Tree(context.Background(), entries[:1], Digest{}); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Tree over existing copy: error = %v, want ErrExist", err)
	}

	// A failing entry leaves no copy behind.
	bad := entries[1]
	bad.Dst = filepath.Join(out, "bad")
	bad.SHA256 = Sum(nil)
	if err := Tree(context.Background(), []Entry{bad}, Digest{}); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Tree error = %v, want mismatch", err)
	}
	if _, err := os.Stat(bad.Dst); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed copy left behind: stat error = %v", err)
	}
}

func TestTreeDeviceDoesNotReadForever(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	err := Tree(context.Background(), []Entry{{Path: "zero", Src: "/dev/zero", Length: 10}}, Digest{})
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("Tree(/dev/zero) error = %v, want mismatch", err)
	}
}

func TestTreeCanceled(t *testing.T) {
	data := randBytes(t, 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Tree(ctx, []Entry{{Path: "a", Src: writeFile(t, t.TempDir(), "a", data), Length: 10, SHA256: Sum(data)}}, Digest{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Tree error = %v, want context.Canceled", err)
	}
}

func BenchmarkSHA256SIMD(b *testing.B) {
	buf := make([]byte, bufSize)
	h := New()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		h.Write(buf)
	}
}

func BenchmarkSHA256Stdlib(b *testing.B) {
	buf := make([]byte, bufSize)
	h := stdsha256.New()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		h.Write(buf)
	}
}

func BenchmarkTree(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.Read(data)
	e := Entry{Path: "big", Src: filepath.Join(b.TempDir(), "big"), Length: int64(len(data)), SHA256: Sum(data)}
	if err := os.WriteFile(e.Src, data, 0o644); err != nil {
		b.Fatal(err)
	}
	bundle := e.SHA256
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := Tree(context.Background(), []Entry{e}, bundle); err != nil {
			b.Fatal(err)
		}
	}
}

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
