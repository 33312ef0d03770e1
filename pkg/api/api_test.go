package api

import (
	"slices"
	"testing"
)

func TestParsePeerPorts(t *testing.T) {
	tests := []struct {
		header string
		want   []uint16
	}{
		{"", nil},
		{"6881", []uint16{6881}},
		{"6881,7000", []uint16{6881, 7000}},
		{" 6881 , 7000 ", []uint16{6881, 7000}},
		{"0,65536,-1,x,,6881", []uint16{6881}},
		{"1,2,3,4,5,6,7,8,9,10", []uint16{1, 2, 3, 4, 5, 6, 7, 8}},
	}
	for _, tt := range tests {
		if got := ParsePeerPorts(tt.header); !slices.Equal(got, tt.want) {
			t.Errorf("ParsePeerPorts(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

// FuzzParsePeerPorts: whatever a seeder sends, at most maxPeerPorts ports come out, none 0,
// and writing them back reads the same.
func FuzzParsePeerPorts(f *testing.F) {
	for _, s := range []string{"", "6881", "6881,7000", "0,65536,x", "1,2,3,4,5,6,7,8,9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		got := ParsePeerPorts(h)
		if len(got) > maxPeerPorts || slices.Contains(got, 0) {
			t.Fatalf("ParsePeerPorts(%q) = %v", h, got)
		}
		if again := ParsePeerPorts(FormatPeerPorts(got)); !slices.Equal(again, got) {
			t.Fatalf("ports %v written and read back: %v", got, again)
		}
	})
}
