package swarm

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

// pieceStore opens r in a verifying storage writing in place under a new directory, as an
// agent's does, and returns a function giving its pieces, with what the entry was told.
type pieceStore struct {
	dir      string
	vs       *verifyingStorage
	ts       storage.TorrentImpl
	info     metainfo.Info
	mu       sync.Mutex
	failed   []int
	verified map[int][]byte
	writeErr error
}

func openPieceStore(t *testing.T, r *testRelease) *pieceStore {
	t.Helper()
	ps := &pieceStore{dir: t.TempDir(), verified: map[int][]byte{}}
	ps.vs = newVerifyingStorage(ps.dir, storage.NewMapPieceCompletion(), false, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { ps.vs.Close() })
	ps.vs.register(&entry{
		infoHash: r.infoHash(), dir: ps.dir, pieces: r.layout.PiecesSHA256,
		pieceFailed: func(i int, _ []byte) { ps.mu.Lock(); ps.failed = append(ps.failed, i); ps.mu.Unlock() },
		pieceVerified: func(i int, data []byte) {
			ps.mu.Lock()
			ps.verified[i] = bytes.Clone(data)
			ps.mu.Unlock()
		},
		writeFailed: func(err error) { ps.mu.Lock(); ps.writeErr = err; ps.mu.Unlock() },
	})
	ps.info = infoOf(t, r)
	var err error
	if ps.ts, err = ps.vs.OpenTorrent(context.Background(), &ps.info, r.infoHash()); err != nil {
		t.Fatal(err)
	}
	return ps
}

func (ps *pieceStore) piece(i int) *verifiedPiece {
	p := ps.info.Piece(i)
	return ps.ts.PieceWithHash(p, g.Some(p.V1Hash().Unwrap().Bytes())).(*verifiedPiece)
}

// onDisk is the piece's bytes as the files hold them.
func (ps *pieceStore) onDisk(t *testing.T, r *testRelease, i int) []byte {
	t.Helper()
	var all []byte
	for _, f := range r.m.Files {
		p := filepath.Join(ps.dir, r.m.Name)
		if r.m.Dir {
			p = filepath.Join(p, filepath.FromSlash(f.Path))
		}
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			b = make([]byte, f.Length)
		} else if err != nil {
			t.Fatal(err)
		}
		all = append(all, append(b, make([]byte, f.Length-int64(len(b)))...)...)
	}
	start := int64(i) * r.m.PieceLength
	return all[start:min(start+r.m.PieceLength, int64(len(all)))]
}

// writeBlocks writes data into p in 16 KiB blocks, last block first.
func writeBlocks(t *testing.T, p *verifiedPiece, data []byte) {
	t.Helper()
	const block = 16 << 10
	for off := (len(data) - 1) / block * block; off >= 0; off -= block {
		if _, err := p.WriteAt(data[off:min(off+block, len(data))], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPieceBuffers: received blocks stay in memory until their piece is hashed; a piece that
// matches is written to disk whole, one that does not never reaches the disk. Once every buffer
// is taken, a piece is written through block by block and hashed from disk; a block arriving
// after its piece was hashed is dropped.
func TestPieceBuffers(t *testing.T) {
	const buffers = 8
	r := buildFileReleaseWith(t, "app.bin", randBytes(7, (buffers+3)<<16+1000), 64<<10)
	ps := openPieceStore(t, r)
	ps.vs.bufs.budget = buffers * r.m.PieceLength
	data := func(i int) []byte {
		start := int64(i) * r.m.PieceLength
		return r.files[0].data[start:min(start+r.m.PieceLength, int64(len(r.files[0].data)))]
	}
	zero := make([]byte, r.m.PieceLength)

	// Piece 0 arrives, and is read back while unhashed: nothing is on disk yet.
	writeBlocks(t, ps.piece(0), data(0))
	if !bytes.Equal(ps.onDisk(t, r, 0), zero) {
		t.Fatal("a buffered piece reached the disk before it was hashed")
	}
	got := make([]byte, len(data(0)))
	if n, err := ps.piece(0).ReadAt(got, 0); n != len(got) || err != nil || !bytes.Equal(got, data(0)) {
		t.Fatalf("ReadAt of a buffered piece: %d, %v", n, err)
	}
	if h, err := ps.piece(0).SelfHash(); err != nil || h != ps.info.Piece(0).V1Hash().Unwrap() {
		t.Fatalf("SelfHash of a good buffered piece: %x, %v", h, err)
	}
	if !bytes.Equal(ps.onDisk(t, r, 0), data(0)) || !bytes.Equal(ps.verified[0], data(0)) {
		t.Fatal("a good buffered piece was not written to disk and passed on")
	}
	if err := ps.piece(0).MarkComplete(); err != nil { // as the library does then
		t.Fatal(err)
	}

	// Piece 1 with a flipped byte fails and is never written.
	bad := bytes.Clone(data(1))
	bad[100] ^= 1
	writeBlocks(t, ps.piece(1), bad)
	if h, err := ps.piece(1).SelfHash(); err != nil || h != (metainfo.Hash{}) {
		t.Fatalf("SelfHash of a bad piece: %x, %v", h, err)
	}
	if len(ps.failed) != 1 || ps.failed[0] != 1 || !bytes.Equal(ps.onDisk(t, r, 1), zero) {
		t.Fatalf("bad piece: failed %v; on disk: %v", ps.failed, !bytes.Equal(ps.onDisk(t, r, 1), zero))
	}
	// Sent again, it passes: its buffer starts afresh.
	writeBlocks(t, ps.piece(1), data(1))
	if h, _ := ps.piece(1).SelfHash(); h == (metainfo.Hash{}) || !bytes.Equal(ps.onDisk(t, r, 1), data(1)) {
		t.Fatal("piece 1 sent again did not pass")
	}

	// A late copy of a block of piece 0, complete, with other bytes, is dropped.
	if _, err := ps.piece(0).WriteAt(make([]byte, 16<<10), 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ps.onDisk(t, r, 0), data(0)) {
		t.Fatal("a late block overwrote a verified piece")
	}

	// Take every buffer with the first block of pieces 2 to 2+max-1: the next piece is
	// written through, and still passes.
	for i := 2; i < 2+buffers; i++ {
		if _, err := ps.piece(i).WriteAt(data(i)[:16<<10], 0); err != nil {
			t.Fatal(err)
		}
	}
	through := 2 + buffers
	writeBlocks(t, ps.piece(through), data(through))
	if !bytes.Equal(ps.onDisk(t, r, through), data(through)) {
		t.Fatal("with every buffer taken, a piece was not written through")
	}
	if h, _ := ps.piece(through).SelfHash(); h == (metainfo.Hash{}) {
		t.Fatal("a piece written through failed its hash")
	}
	// The buffered ones complete and pass too (the last one is shorter).
	for i := 2; i < 2+buffers; i++ {
		writeBlocks(t, ps.piece(i), data(i))
		if h, _ := ps.piece(i).SelfHash(); h == (metainfo.Hash{}) || !bytes.Equal(ps.onDisk(t, r, i), data(i)) {
			t.Fatalf("piece %d did not pass", i)
		}
	}
	if ps.vs.bufs.held != 0 || len(ps.vs.bufs.bufs) != 0 {
		t.Errorf("%d buffers held, %d pieces known after every piece was hashed", ps.vs.bufs.held, len(ps.vs.bufs.bufs))
	}
	if ps.writeErr != nil {
		t.Errorf("write failure reported: %v", ps.writeErr)
	}
	// A torrent dropped mid-piece gives its buffers back.
	if _, err := ps.piece(0).WriteAt(make([]byte, 16<<10), 0); err != nil { // complete: dropped
		t.Fatal(err)
	}
	last := r.m.NumPieces() - 1
	if _, err := ps.piece(last).WriteAt(data(last)[:100], 0); err != nil {
		t.Fatal(err)
	}
	if ps.vs.bufs.held == 0 {
		t.Fatal("a piece begun holds no buffer")
	}
	ps.vs.unregister(r.infoHash())
	if ps.vs.bufs.held != 0 || len(ps.vs.bufs.bufs) != 0 {
		t.Errorf("%d bytes held, %d pieces known after the torrent was dropped", ps.vs.bufs.held, len(ps.vs.bufs.bufs))
	}
}

// TestPieceBufferWriteFails: a verified piece that cannot be written to disk fails its check
// and is reported, so the download stops rather than count bytes it does not have.
func TestPieceBufferWriteFails(t *testing.T) {
	r := buildFileReleaseWith(t, "app.bin", randBytes(8, 3<<16), 64<<10)
	ps := openPieceStore(t, r)
	// The file's place is taken by a directory: the write fails.
	if err := os.MkdirAll(filepath.Join(ps.dir, r.m.Name), 0o755); err != nil {
		t.Fatal(err)
	}
	writeBlocks(t, ps.piece(0), r.files[0].data[:64<<10])
	h, err := ps.piece(0).SelfHash()
	if err == nil || h != (metainfo.Hash{}) {
		t.Fatalf("SelfHash with an unwritable file: %x, %v; want an error", h, err)
	}
	if ps.writeErr == nil || len(ps.verified) != 0 {
		t.Fatalf("write failure not reported (%v), or the piece passed on", ps.writeErr)
	}
}
