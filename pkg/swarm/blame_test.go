package swarm

import (
	"net/netip"
	"slices"
	"testing"
)

func TestBlame(t *testing.T) {
	good := randBytes(9, 64<<10) // a piece of four 16 KiB blocks
	spoilt := slices.Clone(good[16<<10 : 32<<10])
	spoilt[5] ^= 1
	// liar shares its address with honest, behind one NAT.
	honest, liar, other := netip.MustParseAddrPort("10.0.0.1:6881"), netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.3:6881")
	type block struct {
		begin int64
		peer  netip.AddrPort
		data  []byte
	}
	all := func(peer netip.AddrPort) []block {
		var bs []block
		for begin := 0; begin < len(good); begin += 16 << 10 {
			bs = append(bs, block{int64(begin), peer, good[begin : begin+16<<10]})
		}
		return bs
	}
	tests := []struct {
		name     string
		attempts [][]block // the piece's downloads: every one but the last fails, the last verifies
		want     []netip.AddrPort
	}{
		{"every block right", [][]block{all(honest)}, nil},
		{"one wrong block among honest ones", [][]block{
			{{0, honest, good[:16<<10]}, {16 << 10, liar, spoilt}, {32 << 10, other, good[32<<10 : 48<<10]}},
			all(other),
		}, []netip.AddrPort{liar}},
		{"the blocks of the attempt that verifies are not judged", [][]block{
			{{16 << 10, liar, spoilt}},
			{{16 << 10, honest, good[16<<10 : 32<<10]}, {0, other, good[:16<<10]}},
		}, []netip.AddrPort{liar}},
		{"a block past the piece's end", [][]block{{{60 << 10, liar, good[:16<<10]}}}, []netip.AddrPort{liar}},
		{"a short block that matches", [][]block{{{60 << 10, honest, good[60<<10:]}}}, nil},
		{"a later good block from the same peer does not clear an earlier bad one elsewhere", [][]block{
			{{16 << 10, liar, spoilt}, {0, liar, good[:16<<10]}},
			all(honest),
		}, []netip.AddrPort{liar}},
		{"a block two peers sent in one failed attempt blames neither", [][]block{
			{{16 << 10, liar, spoilt}, {16 << 10, honest, good[16<<10 : 32<<10]}},
			all(other),
		}, nil},
		{"blocks of another piece are not judged", [][]block{
			{{0, honest, good[:16<<10]}},
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBlame()
			b.record(1, 16<<10, liar, len(spoilt)) // another piece, never checked here
			for i, attempt := range tc.attempts {
				data := make([]byte, len(good)) // what the storage holds when the piece is hashed
				for _, bl := range attempt {
					b.record(0, bl.begin, bl.peer, len(bl.data))
					if bl.begin+int64(len(bl.data)) <= int64(len(data)) {
						copy(data[bl.begin:], bl.data)
					}
				}
				if i < len(tc.attempts)-1 {
					b.failed(0, data)
				}
			}
			if got := b.verified(0, good); !slices.Equal(got, tc.want) {
				t.Fatalf("blamed %v, want %v", got, tc.want)
			}
			if got := b.verified(0, good); got != nil {
				t.Fatalf("a verified piece's blocks were kept: blamed %v again", got)
			}
		})
	}
}

func TestBanOverridesTracker(t *testing.T) {
	ip := netip.MustParseAddr("127.0.0.2")
	for _, restrict := range []bool{true, false} {
		a := newAllowlist(restrict, nil, nil, nil)
		a.learn(ip.AsSlice())
		if blocked(a, ip.String()) {
			t.Fatalf("restrict=%v: a known address was refused", restrict)
		}
		a.ban(ip)
		if !blocked(a, ip.String()) {
			t.Fatalf("restrict=%v: a banned address was allowed", restrict)
		}
		a.learn(ip.AsSlice()) // the tracker hands it out again
		if !blocked(a, ip.String()) {
			t.Fatalf("restrict=%v: a banned address came back through the tracker", restrict)
		}
	}
}
