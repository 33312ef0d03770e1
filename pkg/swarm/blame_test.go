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
	tests := []struct {
		name   string
		blocks func(b *blame)
		want   []netip.AddrPort
	}{
		{"every block right", func(b *blame) {
			for begin := 0; begin < len(good); begin += 16 << 10 {
				b.record(0, int64(begin), honest, good[begin:begin+16<<10])
			}
		}, nil},
		{"one wrong block among honest ones", func(b *blame) {
			b.record(0, 0, honest, good[:16<<10])
			b.record(0, 16<<10, liar, spoilt)
			b.record(0, 32<<10, other, good[32<<10:48<<10])
		}, []netip.AddrPort{liar}},
		{"a block past the piece's end", func(b *blame) {
			b.record(0, 60<<10, liar, good[:16<<10])
		}, []netip.AddrPort{liar}},
		{"a short block that matches", func(b *blame) {
			b.record(0, 60<<10, honest, good[60<<10:])
		}, nil},
		{"a later good block from the same peer does not clear an earlier bad one elsewhere", func(b *blame) {
			b.record(0, 16<<10, liar, spoilt)
			b.record(0, 0, liar, good[:16<<10])
		}, []netip.AddrPort{liar}},
		{"an honest block from the same address does not hide a bad one", func(b *blame) {
			b.record(0, 16<<10, liar, spoilt)
			b.record(0, 16<<10, honest, good[16<<10:32<<10])
		}, []netip.AddrPort{liar}},
		{"blocks of another piece are not judged", func(b *blame) {
			b.record(1, 16<<10, liar, spoilt)
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBlame()
			tc.blocks(b)
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
