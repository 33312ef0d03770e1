package seeder

import (
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/store"
	"github.com/peerpatch/peerpatch/pkg/swarm"
	"github.com/peerpatch/peerpatch/pkg/trust"
	"github.com/peerpatch/peerpatch/pkg/verify"
)

// maxTargetsSize bounds the signed targets.json of a publish.
const maxTargetsSize = 16 << 20

// HeaderPath carries a release file's slash path on its multipart part.
const HeaderPath = "Peerpatch-Path"

// publishError is a refusal with its HTTP status.
type publishError struct {
	code int
	err  error
}

func (e *publishError) Error() string { return e.err.Error() }
func (e *publishError) Unwrap() error { return e.err }

func refuse(code int, format string, args ...any) error {
	return &publishError{code: code, err: fmt.Errorf(format, args...)}
}

// handlePublish stores a release: the signed targets first, then the files, streamed to a
// staging directory. The release is checked against the signed metadata (every file's length
// and SHA-256, the bundle hash, the infohash, the piece hashes), moved into place, and only then
// the new targets are committed and snapshot and timestamp signed. Any failure leaves nothing.
func (s *Seeder) handlePublish(w http.ResponseWriter, r *http.Request) {
	channel, version, role := r.URL.Query().Get("channel"), r.URL.Query().Get("version"), r.URL.Query().Get("role")
	res, err := s.publish(r, channel, version, role)
	if err != nil {
		code := http.StatusBadRequest
		var pe *publishError
		if errors.As(err, &pe) {
			code = pe.code
		}
		s.meters.publishes.WithLabelValues(publishRefused).Inc()
		s.log.Warn("publish refused", "channel", channel, "version", version, "err", err)
		writeError(w, code, "publish %s %s: %v", channel, version, err)
		return
	}
	s.meters.publishes.WithLabelValues(publishPublished).Inc()
	s.log.Info("published", "channel", channel, "version", version, "infohash", res.InfoHash, "bytes", res.Length)
	writeJSON(w, http.StatusCreated, res)
}

func (s *Seeder) publish(r *http.Request, channel, version, role string) (*api.Published, error) {
	if err := release.ValidChannel(channel); err != nil {
		return nil, err
	}
	if role != "" {
		if err := trust.ValidRoleName(role); err != nil {
			return nil, err
		}
	}
	if err := release.ValidVersion(version); err != nil {
		return nil, err
	}
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	if s.lookup(channel, version) != nil {
		return nil, refuse(http.StatusConflict, "version %s is already published", version)
	}
	if cur := s.latest(channel); cur != "" && release.CompareVersions(version, cur) <= 0 {
		return nil, refuse(http.StatusConflict, "version %s is not greater than the channel's current version %s", version, cur)
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, fmt.Errorf("read upload: %w", err)
	}
	part, err := mr.NextPart()
	if err != nil || part.FormName() != api.PartTargets {
		return nil, fmt.Errorf("upload must start with the signed %q part", api.PartTargets)
	}
	signed, err := io.ReadAll(io.LimitReader(part, maxTargetsSize+1))
	if err != nil {
		return nil, fmt.Errorf("read targets: %w", err)
	}
	if len(signed) > maxTargetsSize {
		return nil, fmt.Errorf("targets metadata over %d bytes", maxTargetsSize)
	}
	bundle, pieces, m, err := proposed(signed, channel, version)
	if err != nil {
		return nil, err
	}
	if role != "" {
		if err := s.repo.CheckRolePaths(role, bundle.Name, pieces.Name); errors.Is(err, trust.ErrOutsidePaths) {
			return nil, refuse(http.StatusForbidden, "role %s may not sign this release: %w", role, err)
		} else if err != nil {
			return nil, err
		}
	}

	staging := filepath.Join(s.cfg.DataDir, stagingDir)
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return nil, refuse(http.StatusInternalServerError, "create staging area: %w", err)
	}
	tmp, err := os.MkdirTemp(staging, channel+"-"+version+"-")
	if err != nil {
		return nil, refuse(http.StatusInternalServerError, "create staging area: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := receiveFiles(mr, tmp, m); err != nil {
		return nil, err
	}
	layout, err := release.Build(r.Context(), filepath.Join(tmp, m.Name), m.PieceLength)
	if err != nil {
		return nil, fmt.Errorf("hash upload: %w", err)
	}
	infoBytes, err := checkLayout(layout, m, bundle, pieces)
	if err != nil {
		return nil, err
	}

	final := s.releaseDir(channel, version)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return nil, refuse(http.StatusInternalServerError, "store release: %w", err)
	}
	if err := os.RemoveAll(final); err != nil { // leftovers of an unsigned attempt
		return nil, refuse(http.StatusInternalServerError, "store release: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, refuse(http.StatusInternalServerError, "store release: %w", err)
	}
	rec := record{Manifest: *m, InfoBytes: infoBytes, Pieces: release.EncodePieces(layout.PiecesSHA256), PublishedAt: time.Now().UTC(), Pending: true}
	key := releaseKey(channel, version)
	err = errors.Join(
		s.db.PutRaw(store.Meta, map[string][]byte{piecesFile(&rec): rec.Pieces}),
		s.db.Put(store.Releases, key, rec))
	if err == nil {
		// Servable before the signed metadata announces it: agents woken by the new metadata
		// fetch the torrent at once, and a 404 would cost each a retry.
		if err = s.seed(rec); err != nil {
			err = refuse(http.StatusInternalServerError, "%w", err)
		}
	}
	seeded := err == nil
	if err == nil {
		if role == "" {
			_, err = s.repo.Publish(signed, time.Now())
		} else {
			_, err = s.repo.PublishDelegated(role, signed, time.Now())
		}
		switch {
		case errors.Is(err, trust.ErrOutsidePaths):
			err = refuse(http.StatusForbidden, "role %s may not sign this release: %w", role, err)
		case errors.Is(err, trust.ErrBadSignature) && role != "":
			err = refuse(http.StatusForbidden, "%s metadata is not signed by the key delegated to %s: %w", role, role, err)
		case errors.Is(err, trust.ErrBadSignature):
			err = refuse(http.StatusForbidden, "targets metadata is not signed by the deployment's targets key: %w", err)
		case errors.Is(err, trust.ErrVersion):
			err = refuse(http.StatusConflict, "targets metadata was signed against an older targets.json (another publish came first; publish again): %w", err)
		}
	}
	if err != nil {
		if seeded {
			s.unseed(key)
		}
		if ferr := s.forget(rec); ferr != nil {
			s.log.Error("remove refused release", "channel", channel, "version", version, "err", ferr)
		}
		return nil, err
	}
	// Signed: the release is public now, whatever happens to its record.
	s.mu.Lock()
	s.live[key].rec.Pending = false
	s.mu.Unlock()
	rec.Pending = false
	if err := s.db.Put(store.Releases, key, rec); err != nil {
		return nil, refuse(http.StatusInternalServerError, "record release: %w", err)
	}
	return &api.Published{
		Channel: channel, Version: version, InfoHash: m.InfoHash, Length: layout.Length,
		Files: len(m.Files), Pieces: m.NumPieces(),
	}, nil
}

// proposed finds the release's bundle and pieces targets in new (unverified) targets metadata.
func proposed(signed []byte, channel, version string) (bundle, pieces *trust.Target, m *release.Manifest, err error) {
	_, targets, err := trust.ReadTargets(signed)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse targets metadata: %w", err)
	}
	bName, pName := release.BundleTarget(channel, version), release.PiecesTarget(channel, version)
	for i := range targets {
		switch targets[i].Name {
		case bName:
			bundle = &targets[i]
		case pName:
			pieces = &targets[i]
		}
	}
	if bundle == nil || pieces == nil {
		return nil, nil, nil, fmt.Errorf("targets metadata lacks %q or %q", bName, pName)
	}
	m, err = release.ParseManifest(bundle.Custom)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("target %q: %w", bName, err)
	}
	if m.Channel != channel || m.Version != version {
		return nil, nil, nil, fmt.Errorf("target %q is for %s %s", bName, m.Channel, m.Version)
	}
	rName := release.RolloutTarget(channel, version)
	for i := range targets {
		if targets[i].Name == rName {
			if err := checkPolicyTarget(&targets[i]); err != nil {
				return nil, nil, nil, fmt.Errorf("target %q: %w", rName, err)
			}
		}
	}
	return bundle, pieces, m, nil
}

// receiveFiles writes the upload's file parts under dir, each bounded by its signed length.
func receiveFiles(mr *multipart.Reader, dir string, m *release.Manifest) error {
	for _, f := range m.Files {
		part, err := mr.NextPart()
		if err != nil {
			return fmt.Errorf("upload ended before file %q: %w", f.Path, err)
		}
		if got := part.Header.Get(HeaderPath); part.FormName() != api.PartFile || got != f.Path {
			return fmt.Errorf("upload part %q (%s), expected file %q", got, part.FormName(), f.Path)
		}
		dst := filepath.Join(dir, m.Name)
		if m.Dir {
			dst = filepath.Join(dst, filepath.FromSlash(f.Path))
		}
		if err := writeFile(dst, io.LimitReader(part, f.Length+1), f); err != nil {
			return err
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		return fmt.Errorf("upload has more parts than the release has files")
	}
	return nil
}

func writeFile(dst string, r io.Reader, f release.File) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return refuse(http.StatusInternalServerError, "store file %q: %w", f.Path, err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return refuse(http.StatusInternalServerError, "store file %q: %w", f.Path, err)
	}
	n, err := io.Copy(out, r)
	err = errors.Join(err, out.Sync(), out.Close())
	if errors.Is(err, syscall.ENOSPC) {
		return refuse(http.StatusInsufficientStorage, "receive file %q: the seeder's disk is full", f.Path)
	}
	if err != nil {
		return fmt.Errorf("receive file %q: %w", f.Path, err)
	}
	if n != f.Length {
		return fmt.Errorf("file %q: received %d bytes or more, signed length is %d", f.Path, n, f.Length)
	}
	return nil
}

// checkLayout compares what was received with what is signed and returns the info dictionary.
func checkLayout(l *release.Layout, m *release.Manifest, bundle, pieces *trust.Target) ([]byte, error) {
	if l.Manifest.Dir != m.Dir || l.Manifest.Name != m.Name || len(l.Manifest.Files) != len(m.Files) {
		return nil, fmt.Errorf("uploaded files do not match the signed file list")
	}
	for i, f := range l.Manifest.Files {
		if f != m.Files[i] {
			return nil, &verify.MismatchError{Path: f.Path, WantLength: m.Files[i].Length, GotLength: f.Length, Want: m.Files[i].SHA256, Got: f.SHA256}
		}
	}
	if l.Length != bundle.Length || l.SHA256 != bundle.SHA256 {
		return nil, fmt.Errorf("uploaded bundle does not match its signed length and SHA-256")
	}
	l.Manifest.Channel, l.Manifest.Version = m.Channel, m.Version
	infoBytes, infoHash, err := swarm.InfoBytes(l)
	if err != nil {
		return nil, err
	}
	if infoHash != m.InfoHash {
		return nil, fmt.Errorf("uploaded files make infohash %s, signed %s", infoHash, m.InfoHash)
	}
	blob := release.EncodePieces(l.PiecesSHA256)
	if int64(len(blob)) != pieces.Length || verify.Sum(blob) != pieces.SHA256 {
		return nil, fmt.Errorf("piece hashes do not match the signed pieces target")
	}
	return infoBytes, nil
}
