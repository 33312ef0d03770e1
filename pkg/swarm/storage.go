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
	inner      storage.ClientImplCloser
	completion storage.PieceCompletion
	partFiles  bool

	bufs *pieceBuffers

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
	s := &verifyingStorage{torrents: make(map[metainfo.Hash]*entry), completion: completion, partFiles: partFiles, bufs: newPieceBuffers(maxBuffered)}
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
	e := s.torrents[ih]
	delete(s.torrents, ih)
	s.mu.Unlock()
	if e != nil {
		s.bufs.dropAll(e)
	}
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
			vp := &verifiedPiece{PieceImpl: ip, index: p.Index(), length: p.Length(), v1: v1, e: e, bufs: s.bufs}
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

// piecePool recycles piece-sized buffers: for hashing, and of pieceBuffers.
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
// Its blocks are held in memory until it is hashed, where a buffer is free (see pieceBuffers).
type verifiedPiece struct {
	storage.PieceImpl
	index  int
	length int64
	v1     g.Option[[]byte]
	e      *entry
	bufs   *pieceBuffers
	reader *io.SectionReader // nil: read through the library's storage
}

// WriteAt stores a received block: in the piece's buffer, or on disk if it has none. A block of
// a piece that is complete, or was hashed while the block waited, is dropped: it could only
// overwrite verified bytes.
func (p *verifiedPiece) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > p.length {
		return p.PieceImpl.WriteAt(b, off) // the library's storage refuses it
	}
	pb := p.bufs.get(p.e, p.index, 0)
	if pb == nil {
		if p.PieceImpl.Completion().Complete {
			return len(b), nil
		}
		pb = p.bufs.get(p.e, p.index, p.length)
	}
	pb.mu.Lock()
	defer pb.mu.Unlock()
	switch {
	case pb.done:
		return len(b), nil
	case pb.data != nil:
		return copy(pb.data[off:], b), nil
	}
	return p.PieceImpl.WriteAt(b, off)
}

// ReadAt reads from the piece: from its buffer while it has one, otherwise from disk, through
// kept file handles where the torrent has them.
func (p *verifiedPiece) ReadAt(b []byte, off int64) (int, error) {
	if pb := p.bufs.get(p.e, p.index, 0); pb != nil {
		pb.mu.Lock()
		if !pb.done && pb.data != nil {
			defer pb.mu.Unlock()
			if off < 0 || off > p.length {
				return 0, fmt.Errorf("read piece %d at %d: out of range", p.index, off)
			}
			n := copy(b, pb.data[off:])
			if n < len(b) {
				return n, io.EOF
			}
			return n, nil
		}
		pb.mu.Unlock()
	}
	return p.readStored(b, off)
}

// readStored reads from disk.
func (p *verifiedPiece) readStored(b []byte, off int64) (int, error) {
	if p.reader != nil {
		return p.reader.ReadAt(b, off)
	}
	return p.PieceImpl.ReadAt(b, off)
}

var _ storage.SelfHashing = (*verifiedPiece)(nil)

// SelfHash compares the piece's SHA-256 with the signed one: of its buffer, which it then
// writes to disk if it matches, or of what is on disk. On a match it returns the torrent's v1
// hash so the library counts the piece; otherwise a zero hash, so the library treats the piece
// as failed (and bans a peer that alone supplied it).
func (p *verifiedPiece) SelfHash() (metainfo.Hash, error) {
	if pb := p.bufs.get(p.e, p.index, 0); pb != nil {
		pb.mu.Lock()
		defer pb.mu.Unlock()
		defer p.bufs.drop(p.e, p.index, pb)
		if !pb.done && pb.data != nil {
			return p.check(pb.data, true)
		}
	}
	p.e.diskChecks.Add(1)
	buf := getBuf(p.length)
	defer piecePool.Put(buf)
	n, err := p.readStored(*buf, 0)
	if int64(n) < p.length && (errors.Is(err, io.EOF) || errors.Is(err, fs.ErrNotExist)) {
		return metainfo.Hash{}, nil // not there yet: incomplete, nobody to blame
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return metainfo.Hash{}, fmt.Errorf("read piece %d: %w", p.index, err)
	}
	return p.check(*buf, false)
}

// check hashes data, the piece's bytes, and on a match stores them first if store is set.
func (p *verifiedPiece) check(data []byte, store bool) (metainfo.Hash, error) {
	if verify.Sum(data) != p.e.pieces[p.index] {
		if !p.e.checking.Load() {
			p.e.pieceFailed(p.index, data)
		}
		return metainfo.Hash{}, nil
	}
	if !p.v1.Ok {
		return metainfo.Hash{}, fmt.Errorf("piece %d: torrent has no v1 piece hash", p.index)
	}
	if store {
		if _, err := p.PieceImpl.WriteAt(data, 0); err != nil {
			err = fmt.Errorf("store piece %d: %w", p.index, err)
			p.e.writeFailed(err)
			return metainfo.Hash{}, err
		}
	}
	p.e.pieceVerified(p.index, data)
	var h metainfo.Hash
	copy(h[:], p.v1.Value)
	return h, nil
}
