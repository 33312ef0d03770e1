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
// remembers a short hash of every block a peer sent into a piece not yet verified; once the
// piece verifies, a peer whose block differs from the verified bytes sent garbage. Peers are
// told apart by address and port: agents behind one address (NAT, or loopback in tests) would
// otherwise overwrite each other's records of a block.
type blame struct {
	seed maphash.Seed

	mu     sync.Mutex
	pieces map[int]map[blockFrom]blockSum // unverified piece → who sent which block → its hash
}

type blockSum struct {
	hash   uint64
	length int64
}

type blockFrom struct {
	begin int64
	peer  netip.AddrPort
}

func newBlame() *blame {
	return &blame{seed: maphash.MakeSeed(), pieces: make(map[int]map[blockFrom]blockSum)}
}

// record notes that peer sent data at begin in piece.
func (b *blame) record(piece int, begin int64, peer netip.AddrPort, data []byte) {
	sum := blockSum{maphash.Bytes(b.seed, data), int64(len(data))}
	b.mu.Lock()
	defer b.mu.Unlock()
	blocks := b.pieces[piece]
	if blocks == nil {
		blocks = make(map[blockFrom]blockSum)
		b.pieces[piece] = blocks
	}
	blocks[blockFrom{begin, peer}] = sum
}

// verified takes the verified bytes of piece and returns the peers that sent a block that
// differs from them. It forgets the piece's blocks.
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
		if k.begin < 0 || k.begin+sum.length > int64(len(data)) || maphash.Bytes(b.seed, data[k.begin:k.begin+sum.length]) != sum.hash {
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
