package agent

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"unicode/utf16"
)

// TestMountPointReparseData checks the bytes that make a Windows junction (see junction.go)
// against the documented layout: here, since the junction itself can only be made on Windows.
func TestMountPointReparseData(t *testing.T) {
	b, err := mountPointReparseData(`C:\App\releases\1.0.0`)
	if err != nil {
		t.Fatal(err)
	}
	sub, pr := `\??\C:\App\releases\1.0.0`, `C:\App\releases\1.0.0`
	le := binary.LittleEndian
	want := []struct {
		name      string
		off       int
		got, want uint32
	}{
		{"ReparseTag", 0, le.Uint32(b), 0xA0000003},
		{"ReparseDataLength", 4, uint32(le.Uint16(b[4:])), uint32(len(b) - 8)},
		{"Reserved", 6, uint32(le.Uint16(b[6:])), 0},
		{"SubstituteNameOffset", 8, uint32(le.Uint16(b[8:])), 0},
		{"SubstituteNameLength", 10, uint32(le.Uint16(b[10:])), uint32(2 * len(sub))},
		{"PrintNameOffset", 12, uint32(le.Uint16(b[12:])), uint32(2*len(sub) + 2)},
		{"PrintNameLength", 14, uint32(le.Uint16(b[14:])), uint32(2 * len(pr))},
	}
	for _, w := range want {
		if w.got != w.want {
			t.Errorf("%s (offset %d) = %#x, want %#x", w.name, w.off, w.got, w.want)
		}
	}
	if len(b) != 16+2*(len(sub)+1+len(pr)+1) {
		t.Errorf("buffer of %d bytes, want %d", len(b), 16+2*(len(sub)+1+len(pr)+1))
	}
	if got, err := parseMountPointReparseData(b); err != nil || got != pr {
		t.Errorf("parse = %q, %v; want %q", got, err, pr)
	}

	for _, tc := range []struct {
		name, target, want, wantErr string
	}{
		{name: "long path prefix", target: `\\?\D:\x`, want: `D:\x`},
		{name: "not ASCII", target: `C:\Programme\Größe\應用\1.0.0`, want: `C:\Programme\Größe\應用\1.0.0`},
		{name: "relative", target: `releases\1.0.0`, wantErr: "absolute path on a local drive"},
		{name: "drive relative", target: `C:releases`, wantErr: "absolute path on a local drive"},
		{name: "network share", target: `\\server\share\app`, wantErr: "absolute path on a local drive"},
		{name: "too long", target: `C:\` + strings.Repeat("d", 9000), wantErr: "too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := mountPointReparseData(tc.target)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, err := parseMountPointReparseData(b); err != nil || got != tc.want {
				t.Fatalf("parse = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// parseMountPointReparseData is the inverse of mountPointReparseData: the target's print
// name, checking the layout. (The agent reads junctions with os.Readlink.)
func parseMountPointReparseData(b []byte) (string, error) {
	le := binary.LittleEndian
	if len(b) < 16 || le.Uint32(b) != ioReparseTagMountPoint {
		return "", fmt.Errorf("not mount point reparse data")
	}
	if int(le.Uint16(b[4:]))+8 != len(b) {
		return "", fmt.Errorf("reparse data length %d, buffer of %d bytes", le.Uint16(b[4:]), len(b))
	}
	path := b[16:]
	name := func(off, n uint16) (string, error) {
		if int(off)+int(n) > len(path) || off%2 != 0 || n%2 != 0 {
			return "", fmt.Errorf("name at %d+%d outside the path buffer of %d bytes", off, n, len(path))
		}
		u := make([]uint16, n/2)
		for i := range u {
			u[i] = le.Uint16(path[int(off)+2*i:])
		}
		return string(utf16.Decode(u)), nil
	}
	sub, err := name(le.Uint16(b[8:]), le.Uint16(b[10:]))
	if err != nil {
		return "", err
	}
	printName, err := name(le.Uint16(b[12:]), le.Uint16(b[14:]))
	if err != nil {
		return "", err
	}
	if sub != `\??\`+printName {
		return "", fmt.Errorf("substitute name %q does not match print name %q", sub, printName)
	}
	return printName, nil
}
