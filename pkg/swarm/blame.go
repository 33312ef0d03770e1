package swarm

import (
	"hash/maphash"
	"net"
	"net/netip"
	"sync"

	"github.com/anacrolix/torrent"
)

// blame finds peers that send corrupt blocks. The library bans a peer only when it alone
// supplied a failed piece, and cannot tell who spoiled a piece that several peers contributed
// to (its own smart ban needs it to hash pieces, which Peerpatch's storage does). So blame
// remembers which peer sent which block of a piece not yet verified. When the piece fails, the
// failed bytes are those blocks (the library takes one copy of a block per attempt; a second is
// redundant and not written), so it keeps a short hash of each; once the piece verifies, a peer
// whose earlier block differs from the verified bytes sent garbage. A block of the attempt that
// verifies is part of the verified bytes, and is not hashed at all: hashing every block as it
// arrived, and the verified piece again, cost an agent 5% of its CPU. Peers are told apart by
// address and port: agents behind one address (NAT, or loopback in tests) would otherwise
// overwrite each other's records of a block.
type blame struct {
	seed maphash.Seed

	mu     sync.Mutex
	pieces map[int]map[blockFrom]blockSum // unverified piece → who sent which block → its hash
}

type blockSum struct {
	length int64
	hashed bool   // the block was part of a failed attempt
	hash   uint64 // then, its bytes' hash
}

type blockFrom struct {
	begin int64
	peer  netip.AddrPort
}

func newBlame() *blame {
	return &blame{seed: maphash.MakeSeed(), pieces: make(map[int]map[blockFrom]blockSum)}
}

// record notes that peer sent length bytes at begin in piece.
func (b *blame) record(piece int, begin int64, peer netip.AddrPort, length int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	blocks := b.pieces[piece]
	if blocks == nil {
		blocks = make(map[blockFrom]blockSum)
		b.pieces[piece] = blocks
	}
	blocks[blockFrom{begin, peer}] = blockSum{length: int64(length)}
}

// failed takes the bytes of piece that failed verification and hashes, from them, the blocks
// sent since the piece last failed. A block two peers sent in one attempt (after a failed
// write) cannot be told apart, and is forgotten.
func (b *blame) failed(piece int, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	blocks := b.pieces[piece]
	writers := make(map[int64]int)
	for k, sum := range blocks {
		if !sum.hashed {
			writers[k.begin]++
		}
	}
	for k, sum := range blocks {
		switch {
		case sum.hashed:
		case writers[k.begin] > 1:
			delete(blocks, k)
		case k.begin >= 0 && k.begin+sum.length <= int64(len(data)):
			sum.hashed, sum.hash = true, maphash.Bytes(b.seed, data[k.begin:k.begin+sum.length])
			blocks[k] = sum
		}
	}
}

// verified takes the verified bytes of piece and returns the peers that sent a block, in an
// attempt that failed, that differs from them. It forgets the piece's blocks.
func (b *blame) verified(piece int, data []byte) (bad []netip.AddrPort) {
	b.mu.Lock()
	blocks := b.pieces[piece]
	delete(b.pieces, piece)
	b.mu.Unlock()
	seen := map[netip.AddrPort]bool{}
	for k, sum := range blocks {
		if seen[k.peer] {
			continue
		}
		// A block that does not fit the piece is garbage too.
		if k.begin < 0 || k.begin+sum.length > int64(len(data)) ||
			sum.hashed && maphash.Bytes(b.seed, data[k.begin:k.begin+sum.length]) != sum.hash {
			seen[k.peer] = true
			bad = append(bad, k.peer)
		}
	}
	return bad
}

// peerAddr returns the address and port of a peer connection, if it has them.
func peerAddr(p *torrent.Peer) (netip.AddrPort, bool) {
	if a, ok := p.RemoteAddr.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port)), true
		}
	}
	ap, err := netip.ParseAddrPort(p.RemoteAddr.String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}
