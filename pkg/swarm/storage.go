package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"sync"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"

	"github.com/peerpatch/peerpatch/pkg/verify"
)

// verifyingStorage stores torrent data in plain files (no mmap, so nothing can raise SIGBUS) and
// makes the signed SHA-256 of each piece the check that decides whether the piece counts: it
// implements storage.SelfHashing, so the library never marks a piece complete on its own SHA-1.
// A torrent must be registered (its directory and signed piece hashes) before it is opened.
type verifyingStorage struct {
	inner     storage.ClientImplCloser
	partFiles bool

	mu       sync.Mutex
	torrents map[metainfo.Hash]*entry
}

// newVerifyingStorage stores torrents under baseDir.
//
// Part files (data kept under a temporary name until its file is complete) serve the seeder:
// with them, a file under its final name with the right size counts as complete without a
// hash pass at start. A downloading client writes pieces from the origin's shares beside the
// library's own writes, and part files then race: a piece written as the library renames a
// completed part file lands in a new, lost one. So a client that persists completion (an
// agent: its completion database, not file names, says what is verified) writes in place.
func newVerifyingStorage(baseDir string, completion storage.PieceCompletion, partFiles bool, log *slog.Logger) *verifyingStorage {
	s := &verifyingStorage{torrents: make(map[metainfo.Hash]*entry), partFiles: partFiles}
	s.inner = storage.NewFileOpts(storage.NewFileClientOpts{
		ClientBaseDir: baseDir,
		TorrentDirMaker: func(baseDir string, _ *metainfo.Info, ih metainfo.Hash) string {
			if e := s.lookup(ih); e != nil {
				return e.dir
			}
			// Unregistered torrents are refused in OpenTorrent before anything is written.
			return baseDir
		},
		FilePathMaker:   filePath,
		PieceCompletion: completion,
		UsePartFiles:    g.Some(partFiles),
		DisableMmap:     true,
		Logger:          log.With("component", "storage"),
	})
	return s
}

func (s *verifyingStorage) register(e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.torrents[e.infoHash] = e
}

func (s *verifyingStorage) unregister(ih metainfo.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.torrents, ih)
}

func (s *verifyingStorage) lookup(ih metainfo.Hash) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.torrents[ih]
}

func (s *verifyingStorage) Close() error { return s.inner.Close() }

func (s *verifyingStorage) OpenTorrent(ctx context.Context, info *metainfo.Info, ih metainfo.Hash) (storage.TorrentImpl, error) {
	e := s.lookup(ih)
	if e == nil {
		return storage.TorrentImpl{}, fmt.Errorf("open storage for torrent %s: %w", ih.HexString(), ErrNotRegistered)
	}
	if n := info.NumPieces(); n != len(e.pieces) {
		return storage.TorrentImpl{}, fmt.Errorf("open storage for torrent %s: %d pieces, signed metadata has %d: %w",
			ih.HexString(), n, len(e.pieces), ErrMetadataMismatch)
	}
	inner, err := s.inner.OpenTorrent(ctx, info, ih)
	if err != nil {
		return storage.TorrentImpl{}, fmt.Errorf("open storage for torrent %s: %w", ih.HexString(), err)
	}
	closeAll := inner.Close
	var readers *fileReaders
	if !s.partFiles {
		readers = newFileReaders(e.dir, info)
		closeAll = func() error { return errors.Join(readers.Close(), inner.Close()) }
	}
	return storage.TorrentImpl{
		PieceWithHash: func(p metainfo.Piece, v1 g.Option[[]byte]) storage.PieceImpl {
			var ip storage.PieceImpl
			if inner.PieceWithHash != nil {
				ip = inner.PieceWithHash(p, v1)
			} else {
				ip = inner.Piece(p)
			}
			vp := &verifiedPiece{PieceImpl: ip, index: p.Index(), length: p.Length(), v1: v1, e: e}
			if readers != nil {
				vp.reader = io.NewSectionReader(readers, p.Offset(), p.Length())
			}
			return vp
		},
		Close:        closeAll,
		CloseWriters: inner.CloseWriters,
		Capacity:     inner.Capacity,
	}, nil
}

// piecePool recycles piece-sized read buffers for hashing.
var piecePool sync.Pool

func getBuf(n int64) *[]byte {
	if p, ok := piecePool.Get().(*[]byte); ok && int64(cap(*p)) >= n {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n)
	return &b
}

// verifiedPiece is a stored piece whose hash check is SHA-256 against the signed piece hash.
type verifiedPiece struct {
	storage.PieceImpl
	index  int
	length int64
	v1     g.Option[[]byte]
	e      *entry
	reader *io.SectionReader // nil: read through the library's storage
}

// ReadAt reads from the piece, through kept file handles where the torrent has them.
func (p *verifiedPiece) ReadAt(b []byte, off int64) (int, error) {
	if p.reader != nil {
		return p.reader.ReadAt(b, off)
	}
	return p.PieceImpl.ReadAt(b, off)
}

var _ storage.SelfHashing = (*verifiedPiece)(nil)

// SelfHash reads the piece and compares its SHA-256 with the signed one. On a match it returns
// the torrent's v1 hash so the library counts the piece; otherwise a zero hash, so the library
// treats the piece as failed (and bans a peer that alone supplied it).
func (p *verifiedPiece) SelfHash() (metainfo.Hash, error) {
	buf := getBuf(p.length)
	defer piecePool.Put(buf)
	n, err := p.ReadAt(*buf, 0)
	if int64(n) < p.length && (errors.Is(err, io.EOF) || errors.Is(err, fs.ErrNotExist)) {
		return metainfo.Hash{}, nil // not there yet: incomplete, nobody to blame
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return metainfo.Hash{}, fmt.Errorf("read piece %d: %w", p.index, err)
	}
	if verify.Sum(*buf) != p.e.pieces[p.index] {
		if !p.e.checking.Load() {
			p.e.pieceFailed(p.index)
		}
		return metainfo.Hash{}, nil
	}
	if !p.v1.Ok {
		return metainfo.Hash{}, fmt.Errorf("piece %d: torrent has no v1 piece hash", p.index)
	}
	p.e.pieceVerified(p.index, *buf)
	var h metainfo.Hash
	copy(h[:], p.v1.Value)
	return h, nil
}
