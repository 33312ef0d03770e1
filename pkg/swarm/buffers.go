package swarm

import "sync"

// maxBuffered bounds the bytes of the pieces whose blocks a client holds in memory at once
// (see pieceBuffers): 16 pieces of 1 MiB.
const maxBuffered = 16 << 20

// pieceBuffers holds the blocks of the pieces being downloaded in memory until each piece is
// hashed: its SHA-256 is computed from memory and, if it matches, the piece is written to disk
// in one call. The library's file storage writes every 16 KiB block as it arrives and the
// piece is read back to be hashed: 64 writes and a read of every MiB. A piece whose first
// block finds the budget spent is written through to disk block by block, and read back, as
// before.
type pieceBuffers struct {
	mu     sync.Mutex
	bufs   map[bufKey]*pieceBuf
	budget int64 // bytes the buffers may hold
	held   int64 // bytes they hold
}

type bufKey struct {
	e     *entry
	index int
}

// pieceBuf is one piece's blocks. Its fields are guarded by mu.
type pieceBuf struct {
	mu   sync.Mutex
	data []byte // nil: the piece is written through to disk
	done bool   // hashed (or its torrent closed): writes are dropped, data is gone
}

func newPieceBuffers(budget int64) *pieceBuffers {
	return &pieceBuffers{bufs: make(map[bufKey]*pieceBuf), budget: budget}
}

// get returns the buffer of piece index of e, or nil if it has none. With n > 0 a piece without
// one gets one: n bytes, or none (written through) if the budget is spent.
func (b *pieceBuffers) get(e *entry, index int, n int64) *pieceBuf {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := bufKey{e, index}
	if pb := b.bufs[k]; pb != nil || n <= 0 {
		return pb
	}
	pb := &pieceBuf{}
	if b.held+n <= b.budget {
		b.held += n
		// Not cleared: the library hashes a piece once every block is written, and one
		// hashed with a stale byte left fails its check.
		pb.data = *getBuf(n)
	}
	b.bufs[k] = pb
	return pb
}

// drop forgets pb, the buffer of piece index of e, and recycles its bytes (see getBuf). The
// caller holds pb.mu.
func (b *pieceBuffers) drop(e *entry, index int, pb *pieceBuf) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pb.done = true
	if k := (bufKey{e, index}); b.bufs[k] == pb {
		delete(b.bufs, k)
	}
	if pb.data != nil {
		b.held -= int64(len(pb.data))
		data := pb.data
		pb.data = nil
		piecePool.Put(&data)
	}
}

// dropAll forgets every buffer of e (its torrent closed).
func (b *pieceBuffers) dropAll(e *entry) {
	b.mu.Lock()
	var mine []bufKey
	for k := range b.bufs {
		if k.e == e {
			mine = append(mine, k)
		}
	}
	b.mu.Unlock()
	for _, k := range mine {
		if pb := b.get(e, k.index, 0); pb != nil {
			pb.mu.Lock()
			b.drop(e, k.index, pb)
			pb.mu.Unlock()
		}
	}
}
