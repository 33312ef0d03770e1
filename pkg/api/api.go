// Package api defines the seeder's HTTP API: its paths and the JSON documents exchanged by the
// seeder, agents and the admin commands. Everything an agent receives here is untrusted: only
// what TUF metadata signs is believed.
package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/peerpatch/peerpatch/pkg/rollout"
)

// Paths served by the seeder.
const (
	PathHealth   = "/healthz"
	PathMetrics  = "/metrics"  // Prometheus (also the agent's, with --metrics-listen)
	PathTUF      = "/tuf/"     // TUF metadata by file name; targets under /tuf/targets/
	PathWebSeed  = "/webseed/" // release files: /webseed/<channel>/<version>/<name>[/<path>]
	PathAnnounce = "/announce" // BitTorrent tracker
	PathPublish  = "/api/v1/publish"
	PathTorrent  = "/api/v1/torrent/" // /api/v1/torrent/<channel>/<version>
	PathReport   = "/api/v1/report"
	PathStatus   = "/api/v1/status"
	PathEnroll   = "/api/v1/enroll"   // with the fleet enrolment token
	PathAgents   = "/api/v1/agents"   // admin: list; POST /api/v1/agents/<id>/revoke
	PathRotate   = "/api/v1/rotate"   // admin: install a key rotation
	PathDelegate = "/api/v1/delegate" // admin: install a delegated targets role
	PathPeers    = "/api/v1/peers/"   // agents: GET /api/v1/peers/<ip>: 204 (its ports in HeaderPeerPorts) if an enrolled agent announced from ip, else 404
	PathShare    = "/api/v1/share/"   // agents: POST /api/v1/share/<channel>/<version>: one piece of the origin's (ShareRequest)
	PathRollout  = "/api/v1/rollout"  // admin: install targets metadata that changes only rollout policies (RolloutRequest)
	PathWatch    = "/api/v1/watch"    // agents: GET ?after=<snapshot version>&wait=<seconds>: long poll (Watch)
)

// Publish upload: a multipart/form-data body whose first part, named PartTargets, is the new
// signed targets.json (with the query parameter role=R, the new signed R.json of delegated role R), followed by one part per release file, named PartFile, whose file name
// is the file's slash path in the release, in manifest order.
const (
	PartTargets = "targets"
	PartFile    = "file"
)

// Agent states.
const (
	StateIdle        = "idle"
	StateDownloading = "downloading"
	StateInstalling  = "installing"
	StateInstalled   = "installed"
	StateFailed      = "failed"
	// StateRolledBack: the agent went back from TargetVersion to InstalledVersion, because a
	// hook or the health check failed there or because TargetVersion was yanked with rollback;
	// Error says why. It stays so until the agent installs another release.
	StateRolledBack = "rolled_back"
	// StateWaitingWindow: TargetVersion is downloaded (and seeded) and waits for the agent's
	// maintenance window, which opens at NextWindow.
	StateWaitingWindow = "waiting_window"
)

// States lists every agent state, in the order of a download's life.
var States = []string{StateIdle, StateDownloading, StateWaitingWindow, StateInstalling, StateInstalled, StateFailed, StateRolledBack}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// Published answers a successful publish.
type Published struct {
	Channel  string `json:"channel"`
	Version  string `json:"version"`
	InfoHash string `json:"infohash"`
	Length   int64  `json:"length"`
	Files    int    `json:"files"`
	Pieces   int    `json:"pieces"`
}

// Report is what an agent tells the seeder about itself. The transfer figures (Completed to
// Uploaded) are those of TargetVersion if set, else of InstalledVersion.
type Report struct {
	ID               string `json:"id"`
	Hostname         string `json:"hostname"`
	Channel          string `json:"channel"`
	InstalledVersion string `json:"installed_version"`
	State            string `json:"state"`
	// TargetVersion is the release being downloaded, installed or waited for; with
	// StateFailed the one that failed; with StateRolledBack the one rolled back from.
	TargetVersion   string `json:"target_version,omitempty"`
	Completed       int64  `json:"completed_bytes"`
	Total           int64  `json:"total_bytes"`
	BytesFromPeers  int64  `json:"bytes_from_peers"`
	BytesFromOrigin int64  `json:"bytes_from_origin"`
	Uploaded        int64  `json:"uploaded_bytes"`
	Error           string `json:"error,omitempty"`
	// Rings are the agent's rollout rings (`agent --ring`).
	Rings []string `json:"rings,omitempty"`
	// NextWindow, with StateWaitingWindow, is when the agent's next maintenance window opens.
	NextWindow *time.Time `json:"next_window,omitempty"`
	// MetadataVersion is the version of the verified snapshot metadata the agent's last
	// decision was made on (compare Status.MetadataVersion).
	MetadataVersion int64     `json:"metadata_version,omitempty"`
	Time            time.Time `json:"time"`
}

// Release is one published release as the seeder sees it.
type Release struct {
	Channel     string    `json:"channel"`
	Version     string    `json:"version"`
	InfoHash    string    `json:"infohash"`
	Length      int64     `json:"length"`
	PublishedAt time.Time `json:"published_at"`
	// OriginBytes is what this seeder sent of the release: to peers and as a web seed.
	OriginBytes int64 `json:"origin_bytes"`
	Peers       int   `json:"peers"`
	Seeders     int   `json:"seeders"`
	// Rollout is the release's signed rollout policy (rollout.Default() without one);
	// RolloutError is set, and agents install nothing of it, if that policy is invalid.
	Rollout      rollout.Policy `json:"rollout"`
	RolloutError string         `json:"rollout_error,omitempty"`
	// The fleet by the agents' last reports: Agents follow the release's channel (revoked
	// ones left out); Targeted of them are in its percent or its rings (the seeder computes
	// rollout.Bucket as agents do; none if it is yanked); Downloading (or installing) it, Waiting for their
	// maintenance window with it downloaded, Installed on it, Failed on it, RolledBack from it.
	Agents      int `json:"agents"`
	Targeted    int `json:"targeted"`
	Downloading int `json:"downloading"`
	Waiting     int `json:"waiting_window"`
	Installed   int `json:"installed"`
	Failed      int `json:"failed"`
	RolledBack  int `json:"rolled_back"`
	// BytesFromPeers and BytesFromOrigin sum what the agents report having received of the
	// release; PeerShare is the first over both (0 before any byte).
	BytesFromPeers  int64   `json:"bytes_from_peers"`
	BytesFromOrigin int64   `json:"bytes_from_origin"`
	PeerShare       float64 `json:"peer_share"`
}

// Status is the fleet view.
type Status struct {
	Agents   []Report  `json:"agents"`
	Releases []Release `json:"releases"`
	// MetadataVersion is the version of the seeder's current snapshot metadata: an agent whose
	// report has this MetadataVersion decided on everything published so far.
	MetadataVersion int64 `json:"metadata_version"`
}

// ErrorText renders a non-2xx answer for an error message: the seeder's error text if the body
// is an Error document, else the status.
func ErrorText(code int, body []byte) string {
	var e Error
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Error, code)
	}
	return fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
}

// Enroll is what an agent sends, with the fleet enrolment token, to get its own credential.
type Enroll struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"`
}

// Enrolled answers an enrolment: the agent's credential, "<id>.<secret>", to send as its
// bearer token from then on. The seeder keeps only a hash of it.
type Enrolled struct {
	Credential string `json:"credential"`
}

// Agent is an enrolled agent as the admin sees it.
type Agent struct {
	ID         string     `json:"id"`
	Hostname   string     `json:"hostname"`
	EnrolledAt time.Time  `json:"enrolled_at"`
	Revoked    bool       `json:"revoked"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastReport *Report    `json:"last_report,omitempty"`
}

// RotateRequest is the body of POST PathRotate. Root is the new root metadata (version N+1);
// Targets, for a targets key rotation, the current targets re-signed with the new key.
type RotateRequest struct {
	Root    []byte `json:"root"`
	Targets []byte `json:"targets,omitempty"`
}

// DelegateRequest is the body of POST PathDelegate: the targets (version N+1) with a new
// delegation to Role, and the role's first targets metadata (version 1).
type DelegateRequest struct {
	Role     string `json:"role"`
	Targets  []byte `json:"targets"`
	RoleMeta []byte `json:"role_meta"`
}

// RolloutRequest is the body of POST PathRollout: new targets metadata of Role ("" for the
// top-level targets, else a delegated role), version N+1, signed on the admin's (or CI's)
// machine, that adds or changes rollout policies and nothing else.
type RolloutRequest struct {
	Role     string `json:"role,omitempty"`
	Metadata []byte `json:"metadata"`
}

// ReleasePolicy is a release's rollout policy.
type ReleasePolicy struct {
	Channel string         `json:"channel"`
	Version string         `json:"version"`
	Rollout rollout.Policy `json:"rollout"`
}

// RolloutResult answers an accepted RolloutRequest (and is the --json output of the rollout
// and yank commands): the role and version of the new metadata, and the policies it changed.
type RolloutResult struct {
	Role            string          `json:"role"`
	MetadataVersion int64           `json:"metadata_version"`
	Changed         []ReleasePolicy `json:"changed"`
}

// RotateResult answers an accepted rotation.
type RotateResult struct {
	RootVersion int64 `json:"root_version"`
}

// HeaderPeerPorts lists, comma-separated, the ports a known peer announced (GET PathPeers): an
// agent that refused the peer's call dials it back at once instead of waiting for its next
// announce.
const HeaderPeerPorts = "Peerpatch-Peer-Ports"

// FormatPeerPorts writes ports for HeaderPeerPorts.
func FormatPeerPorts(ports []uint16) string {
	list := make([]string, len(ports))
	for i, p := range ports {
		list[i] = strconv.Itoa(int(p))
	}
	return strings.Join(list, ",")
}

// ParsePeerPorts reads HeaderPeerPorts: at most maxPeerPorts ports, skipping what is not a
// port (an older seeder sends no header: no ports).
func ParsePeerPorts(h string) []uint16 {
	var out []uint16
	for f := range strings.SplitSeq(h, ",") {
		p, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err == nil && p > 0 && len(out) < maxPeerPorts {
			out = append(out, uint16(p))
		}
	}
	return out
}

// maxPeerPorts bounds the ports an agent dials back per peer.
const maxPeerPorts = 8

// HeaderPiece names the piece index of a share answer's body.
const HeaderPiece = "Peerpatch-Piece"

// ShareRequest is the body of POST PathShare. Without Want, the origin hands out the next piece
// it has given nobody (204 when there is none left); with Want, one of those pieces, the one it
// has handed out least. The answer's body is the piece, its index in HeaderPiece.
type ShareRequest struct {
	Want []int `json:"want,omitempty"`
}

// Watch is the answer of GET PathWatch: the seeder's metadata version, once it is newer than the
// agent's ("after"), or when the wait ran out. The metadata itself comes from PathTUF, verified.
type Watch struct {
	MetadataVersion int64 `json:"metadata_version"`
}
