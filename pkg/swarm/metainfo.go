package swarm

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/peerpatch/peerpatch/pkg/release"
)

// MaxMetainfoSize bounds a .torrent file Peerpatch will parse: 20 bytes a piece for 2048 pieces
// (the piece size policy's target) is 40 KiB; the bound leaves room for large file lists.
const MaxMetainfoSize = 16 << 20

// InfoBytes builds the bencoded BitTorrent v1 info dictionary of a release and returns it with
// its hex infohash. The dictionary is private (BEP 27) and fully determined by the layout and
// its manifest's channel and version, so the publisher and the seeder derive the same infohash
// independently. The "source" key carries "<channel>/<version>", so that two releases with the
// same bytes (a build promoted from beta to stable) are two torrents.
func InfoBytes(l *release.Layout) ([]byte, string, error) {
	m := &l.Manifest
	private := true
	info := metainfo.Info{
		Name:        m.Name,
		PieceLength: m.PieceLength,
		Pieces:      l.PiecesSHA1,
		Private:     &private,
	}
	if m.Channel != "" {
		info.Source = m.Channel + "/" + m.Version
	}
	if m.Dir {
		for _, f := range m.Files {
			info.Files = append(info.Files, metainfo.FileInfo{Length: f.Length, Path: strings.Split(f.Path, "/")})
		}
	} else {
		info.Length = l.Length
	}
	b, err := bencode.Marshal(info)
	if err != nil {
		return nil, "", fmt.Errorf("encode torrent info for %q: %w", m.Name, err)
	}
	return b, metainfo.HashBytes(b).HexString(), nil
}

// Metainfo wraps info bytes into a .torrent file with its announce URL and web seeds (BEP 19).
func Metainfo(infoBytes []byte, announce string, webSeeds []string) ([]byte, error) {
	mi := metainfo.MetaInfo{InfoBytes: infoBytes, Announce: announce, UrlList: webSeeds, CreatedBy: "peerpatch"}
	var buf bytes.Buffer
	if err := mi.Write(&buf); err != nil {
		return nil, fmt.Errorf("encode torrent: %w", err)
	}
	return buf.Bytes(), nil
}

// TorrentFile is a parsed .torrent that agrees with a release's signed manifest.
type TorrentFile struct {
	infoBytes []byte
	// WebSeeds are the file's BEP 19 URLs (untrusted: a bad one only wastes time).
	WebSeeds []string
}

// CheckMetainfo parses an untrusted .torrent and checks it against the signed manifest: the
// infohash must equal the signed one, and the name, piece length and files must match.
func CheckMetainfo(b []byte, m *release.Manifest) (*TorrentFile, error) {
	if len(b) > MaxMetainfoSize {
		return nil, fmt.Errorf("torrent is %d bytes, limit %d: %w", len(b), MaxMetainfoSize, ErrMetadataMismatch)
	}
	mi, err := metainfo.Load(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parse torrent: %w", err)
	}
	tf, err := CheckInfo(mi.InfoBytes, m)
	if err != nil {
		return nil, err
	}
	for _, u := range mi.UrlList {
		if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
			tf.WebSeeds = append(tf.WebSeeds, u)
		}
	}
	return tf, nil
}

// CheckInfo checks bencoded info bytes against the signed manifest, as CheckMetainfo does, and
// returns a TorrentFile without web seeds.
func CheckInfo(infoBytes []byte, m *release.Manifest) (*TorrentFile, error) {
	if got := metainfo.HashBytes(infoBytes).HexString(); got != m.InfoHash {
		return nil, fmt.Errorf("torrent infohash %s, signed metadata says %s: %w", got, m.InfoHash, ErrMetadataMismatch)
	}
	var info metainfo.Info
	if err := bencode.Unmarshal(infoBytes, &info); err != nil {
		return nil, fmt.Errorf("parse torrent info: %w", err)
	}
	if err := checkInfo(&info, m); err != nil {
		return nil, fmt.Errorf("torrent %s: %w: %w", m.InfoHash, err, ErrMetadataMismatch)
	}
	return &TorrentFile{infoBytes: infoBytes}, nil
}

func checkInfo(info *metainfo.Info, m *release.Manifest) error {
	switch {
	case info.Name != m.Name:
		return fmt.Errorf("name %q, signed %q", info.Name, m.Name)
	case info.PieceLength != m.PieceLength:
		return fmt.Errorf("piece length %d, signed %d", info.PieceLength, m.PieceLength)
	case info.TotalLength() != m.Length():
		return fmt.Errorf("length %d, signed %d", info.TotalLength(), m.Length())
	case info.Private == nil || !*info.Private:
		return fmt.Errorf("not private")
	case info.IsDir() != m.Dir:
		return fmt.Errorf("directory %v, signed %v", info.IsDir(), m.Dir)
	}
	if !m.Dir {
		return nil
	}
	if len(info.Files) != len(m.Files) {
		return fmt.Errorf("%d files, signed %d", len(info.Files), len(m.Files))
	}
	for i, f := range info.Files {
		p := strings.Join(f.Path, "/")
		if p != m.Files[i].Path || f.Length != m.Files[i].Length {
			return fmt.Errorf("file %d is %q (%d bytes), signed %q (%d bytes)", i, p, f.Length, m.Files[i].Path, m.Files[i].Length)
		}
	}
	return nil
}

// ParseInfoHash parses a hex v1 infohash.
func ParseInfoHash(s string) ([20]byte, error) {
	var h [20]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 20 {
		return h, fmt.Errorf("infohash %q is not 40 hex digits", s)
	}
	copy(h[:], b)
	return h, nil
}
