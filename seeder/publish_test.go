package seeder_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/swarm"
	"github.com/peerpatch/peerpatch/seeder"
	"github.com/peerpatch/peerpatch/seeder/adminclient"
)

// newSeeder starts a seeder on a new deployment and returns it with an admin client.
func newSeeder(t *testing.T) (*seeder.Harness, *adminclient.Client) {
	t.Helper()
	keys := seeder.NewDeployment(t)
	h := seeder.StartHarness(t, keys, filepath.Join(t.TempDir(), "data"))
	ac, err := adminclient.New(h.URL, keys, "")
	if err != nil {
		t.Fatal(err)
	}
	return h, ac
}

// appFiles is the default directory release "app".
func appFiles() map[string][]byte {
	return map[string][]byte{"a.txt": []byte("hello, peerpatch\n"), "sub/b.bin": seeder.Pattern(100_000, 1)}
}

func infoHashOf(t *testing.T, path, channel, version string) (string, int64) {
	t.Helper()
	l, err := release.Build(context.Background(), path, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.Manifest.Channel, l.Manifest.Version = channel, version
	_, ih, err := swarm.InfoBytes(l)
	if err != nil {
		t.Fatal(err)
	}
	return ih, l.Length
}

func TestPublishRoundTrip(t *testing.T) {
	h, ac := newSeeder(t)
	ctx := context.Background()
	src := t.TempDir()
	tests := []struct {
		name, channel, version, relName string
		files                           map[string][]byte // "" = single-file release
	}{
		{name: "directory", channel: "stable", version: "1.0.0", relName: "app",
			files: map[string][]byte{"a.txt": []byte("hello\n"), "sub/b.bin": seeder.Pattern(100_000, 1), "sub/empty": {}}},
		{name: "single file", channel: "beta", version: "v0.1.0-rc.1", relName: "tool.bin",
			files: map[string][]byte{"": seeder.Pattern(40_000, 2)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := seeder.WriteTree(t, src, tc.relName, tc.files)
			wantIH, wantLen := infoHashOf(t, path, tc.channel, tc.version)
			res, err := ac.Publish(ctx, h.Keys, tc.channel, tc.version, path)
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			if res.InfoHash != wantIH || res.Length != wantLen || res.Channel != tc.channel || res.Version != tc.version {
				t.Errorf("Publish answered %+v, want infohash %s length %d", res, wantIH, wantLen)
			}

			st, err := ac.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r := seeder.FindRelease(*st, tc.channel, tc.version)
			if r == nil {
				t.Fatalf("Status does not list %s %s: %+v", tc.channel, tc.version, st.Releases)
			}
			if r.InfoHash != wantIH || r.Length != wantLen || r.PublishedAt.IsZero() {
				t.Errorf("Status lists %+v, want infohash %s length %d", *r, wantIH, wantLen)
			}

			// The .torrent, for agents.
			code, hdr, b := h.Do(t, http.MethodGet, api.PathTorrent+tc.channel+"/"+tc.version, h.Agent, nil, nil)
			if code != http.StatusOK || hdr.Get("Content-Type") != "application/x-bittorrent" {
				t.Fatalf("GET torrent: HTTP %d %s %q", code, hdr.Get("Content-Type"), b)
			}
			mi, err := metainfo.Load(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("torrent does not parse: %v", err)
			}
			if got := mi.HashInfoBytes().HexString(); got != wantIH {
				t.Errorf("torrent infohash %s, want %s", got, wantIH)
			}
			if mi.Announce != h.URL+api.PathAnnounce {
				t.Errorf("torrent announce %q, want %q", mi.Announce, h.URL+api.PathAnnounce)
			}
			wantSeed := h.URL + api.PathWebSeed + tc.channel + "/" + tc.version + "/"
			if len(mi.UrlList) != 1 || mi.UrlList[0] != wantSeed {
				t.Errorf("torrent web seeds %q, want [%q]", mi.UrlList, wantSeed)
			}

			// Every file through the web seed.
			for p, data := range tc.files {
				wp := api.PathWebSeed + tc.channel + "/" + tc.version + "/" + tc.relName
				if p != "" {
					wp += "/" + p
				}
				code, _, b := h.Do(t, http.MethodGet, wp, h.Agent, nil, nil)
				if code != http.StatusOK || !bytes.Equal(b, data) {
					t.Errorf("GET %s: HTTP %d, %d bytes, want 200 and the %d file bytes", wp, code, len(b), len(data))
				}
			}
		})
	}

	t.Run("unknown torrent", func(t *testing.T) {
		code, hdr, b := h.Do(t, http.MethodGet, api.PathTorrent+"stable/9.9.9", h.Agent, nil, nil)
		if code != http.StatusNotFound {
			t.Errorf("HTTP %d %s, want 404", code, b)
		}
		seeder.ErrorBody(t, hdr, b)
	})

	big := tests[0].files["sub/b.bin"]
	n := len(big)
	ranges := []struct {
		name, header string
		from, to     int // slice [from, to)
	}{
		{name: "first byte", header: "bytes=0-0", from: 0, to: 1},
		{name: "middle", header: "bytes=1000-1999", from: 1000, to: 2000},
		{name: "across a piece boundary", header: "bytes=16380-16390", from: 16380, to: 16391},
		{name: "suffix", header: "bytes=-10", from: n - 10, to: n},
		{name: "open ended", header: fmt.Sprintf("bytes=%d-", n-100), from: n - 100, to: n},
	}
	for _, tc := range ranges {
		t.Run("range/"+tc.name, func(t *testing.T) {
			code, hdr, b := h.Do(t, http.MethodGet, api.PathWebSeed+"stable/1.0.0/app/sub/b.bin", h.Agent, nil, http.Header{"Range": {tc.header}})
			if code != http.StatusPartialContent {
				t.Fatalf("HTTP %d, want 206", code)
			}
			if want := fmt.Sprintf("bytes %d-%d/%d", tc.from, tc.to-1, n); hdr.Get("Content-Range") != want {
				t.Errorf("Content-Range %q, want %q", hdr.Get("Content-Range"), want)
			}
			if !bytes.Equal(b, big[tc.from:tc.to]) {
				t.Errorf("got %d bytes, not the slice [%d:%d]", len(b), tc.from, tc.to)
			}
		})
	}
	t.Run("range/unsatisfiable", func(t *testing.T) {
		code, _, _ := h.Do(t, http.MethodGet, api.PathWebSeed+"stable/1.0.0/app/sub/b.bin", h.Agent, nil,
			http.Header{"Range": {fmt.Sprintf("bytes=%d-", n+10)}})
		if code != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("HTTP %d, want 416", code)
		}
	})

	notFound := []struct{ name, path string }{
		{name: "state file via dot-dot", path: "stable/1.0.0/../../../state.db"},
		{name: "state file via encoded dot-dot", path: "stable/1.0.0/app/%2e%2e/%2e%2e/%2e%2e/%2e%2e/state.db"},
		{name: "state file as release file", path: "stable/1.0.0/state.db"},
		{name: "other name in the release dir", path: "stable/1.0.0/other"},
		{name: "release directory itself", path: "stable/1.0.0/app"},
		{name: "subdirectory", path: "stable/1.0.0/app/sub"},
		{name: "trailing slash", path: "stable/1.0.0/app/a.txt/"},
		{name: "file not in release", path: "stable/1.0.0/app/sub/c.bin"},
		{name: "unknown version", path: "stable/9.9.9/app/a.txt"},
		{name: "file of another release", path: "beta/v0.1.0-rc.1/app/a.txt"},
		{name: "channel and version only", path: "stable/1.0.0"},
		{name: "channel only", path: "stable"},
	}
	state, err := os.ReadFile(filepath.Join(h.Data, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range notFound {
		t.Run("not found/"+tc.name, func(t *testing.T) {
			code, _, b := h.Do(t, http.MethodGet, api.PathWebSeed+tc.path, h.Agent, nil, nil)
			if code != http.StatusNotFound {
				t.Errorf("GET %s: HTTP %d, want 404", tc.path, code)
			}
			if len(b) > 0 && bytes.Contains(state, b) && len(b) > 64 {
				t.Errorf("GET %s served bytes of the state file", tc.path)
			}
		})
	}
}

// rawPublish sends the first n bytes of a publish body (declaring its full length) on a raw
// connection. halfClose ends the request body early (the server sees EOF and may answer);
// otherwise the connection is closed once the server has started storing the upload.
func rawPublish(t *testing.T, h *seeder.Harness, channel, version, ct string, body []byte, n int, halfClose bool) (code int) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hang guard, not an assertion
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		seeder.PublishPath(channel, version), strings.TrimPrefix(h.URL, "http://"), h.Admin, ct, len(body))
	if _, err := conn.Write(body[:n]); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			// The connection dropped without an answer: the publish lock tells when the
			// handler is done.
			h.WaitPublishIdle()
			return 0
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("cut-short upload answered HTTP %d %s", resp.StatusCode, b)
		}
		return resp.StatusCode
	}
	// Wait until the handler holds the publish lock and has created its staging directory,
	// then drop the connection and wait for the handler to finish.
	deadline := time.Now().Add(20 * time.Second)
	for len(seeder.StagingEntries(t, h.Data)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the upload never reached the staging area")
		}
		time.Sleep(5 * time.Millisecond)
	}
	conn.Close()
	h.WaitPublishIdle()
	return 0
}

func TestInterruptedUpload(t *testing.T) {
	h, ac := newSeeder(t)
	path := seeder.WriteTree(t, t.TempDir(), "app", appFiles())
	sg := seeder.Sign(t, h.Keys, h.TargetsJSON(t), "stable", "1.0.0", path)
	ct, body := seeder.Body(t, sg.Targets, sg.Parts)
	big := sg.Parts[1].Data
	midFile := bytes.Index(body, big) + len(big)/2
	midTargets := bytes.Index(body, sg.Targets) + len(sg.Targets)/2
	closing := bytes.LastIndex(body, []byte("\r\n--")) // start of the closing boundary

	tests := []struct {
		name      string
		n         int
		halfClose bool
		wantCode  int // 0: any error answer or none
	}{
		{name: "body ends mid-file", n: midFile, halfClose: true, wantCode: http.StatusBadRequest},
		{name: "body ends inside the targets part", n: midTargets, halfClose: true, wantCode: http.StatusBadRequest},
		{name: "body ends before the closing boundary", n: closing, halfClose: true, wantCode: http.StatusBadRequest},
		{name: "body ends after the headers", n: 0, halfClose: true, wantCode: http.StatusBadRequest},
		{name: "connection dropped mid-file", n: midFile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := h.Snapshot(t)
			code := rawPublish(t, h, "stable", "1.0.0", ct, body, tc.n, tc.halfClose)
			if tc.wantCode != 0 && code != tc.wantCode {
				t.Errorf("HTTP %d, want %d", code, tc.wantCode)
			}
			h.AssertUnchanged(t, before, "stable", "1.0.0")
		})
	}

	t.Run("content length short of the body", func(t *testing.T) {
		// The body declared is complete up to the last byte of the closing boundary.
		before := h.Snapshot(t)
		code, b := h.Post(t, "stable", "1.0.0", ct, body[:closing])
		if code != http.StatusBadRequest {
			t.Errorf("HTTP %d %s, want 400", code, b)
		}
		h.AssertUnchanged(t, before, "stable", "1.0.0")
	})

	t.Run("then a correct publish succeeds", func(t *testing.T) {
		res, err := ac.Publish(context.Background(), h.Keys, "stable", "1.0.0", path)
		if err != nil {
			t.Fatalf("Publish after interrupted uploads: %v", err)
		}
		if r := seeder.FindRelease(h.Status(t), "stable", "1.0.0"); r == nil || r.InfoHash != res.InfoHash {
			t.Errorf("Status does not list the release: %+v", r)
		}
		if got := seeder.StagingEntries(t, h.Data); len(got) != 0 {
			t.Errorf("staging not empty after publish: %v", got)
		}
	})
}

// tamperSignature flips one hex digit of the first signature.
func tamperSignature(t *testing.T, signed []byte) []byte {
	t.Helper()
	i := bytes.Index(signed, []byte(`"sig":"`))
	if i < 0 {
		t.Fatalf("no signature in %s", signed)
	}
	out := bytes.Clone(signed)
	j := i + len(`"sig":"`)
	if out[j] == '0' {
		out[j] = '1'
	} else {
		out[j] = '0'
	}
	return out
}

func TestPublishMismatch(t *testing.T) {
	h, _ := newSeeder(t)
	path := seeder.WriteTree(t, t.TempDir(), "app", appFiles())
	sg := seeder.Sign(t, h.Keys, h.TargetsJSON(t), "stable", "1.0.0", path)
	if sg.Parts[0].Path != "a.txt" || sg.Parts[1].Path != "sub/b.bin" {
		t.Fatalf("unexpected manifest order %+v", sg.Manifest.Files)
	}
	clone := func() []seeder.Part {
		return []seeder.Part{{Path: "a.txt", Data: bytes.Clone(sg.Parts[0].Data)}, {Path: "sub/b.bin", Data: bytes.Clone(sg.Parts[1].Data)}}
	}
	tests := []struct {
		name     string
		targets  []byte
		parts    func() []seeder.Part
		wantCode int
		wantText string
	}{
		{name: "one byte changed in a large file", wantCode: 400, wantText: `"sub/b.bin"`,
			parts: func() []seeder.Part { p := clone(); p[1].Data[50_000] ^= 1; return p }},
		{name: "one byte changed in a small file", wantCode: 400, wantText: `"a.txt"`,
			parts: func() []seeder.Part { p := clone(); p[0].Data[0] ^= 1; return p }},
		{name: "file shorter than signed", wantCode: 400, wantText: `"sub/b.bin"`,
			parts: func() []seeder.Part { p := clone(); p[1].Data = p[1].Data[:len(p[1].Data)-1]; return p }},
		{name: "file longer than signed", wantCode: 400, wantText: `"sub/b.bin"`,
			parts: func() []seeder.Part { p := clone(); p[1].Data = append(p[1].Data, 0); return p }},
		{name: "file missing", wantCode: 400, wantText: `"sub/b.bin"`,
			parts: func() []seeder.Part { return clone()[:1] }},
		{name: "files swapped", wantCode: 400, wantText: `"a.txt"`,
			parts: func() []seeder.Part { p := clone(); p[0], p[1] = p[1], p[0]; return p }},
		{name: "path header not the signed path", wantCode: 400, wantText: `"a.txt"`,
			parts: func() []seeder.Part { p := clone(); p[0].Path = "../a.txt"; return p }},
		{name: "extra part", wantCode: 400, wantText: "more parts",
			parts: func() []seeder.Part { return append(clone(), seeder.Part{Path: "sub/c", Data: []byte("x")}) }},
		{name: "signature tampered", wantCode: 403, wantText: "signed",
			targets: tamperSignature(t, sg.Targets), parts: clone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := h.Snapshot(t)
			targets := tc.targets
			if targets == nil {
				targets = sg.Targets
			}
			ct, body := seeder.Body(t, targets, tc.parts())
			code, hdr, b := h.Do(t, http.MethodPost, seeder.PublishPath("stable", "1.0.0"), h.Admin, bytes.NewReader(body), http.Header{"Content-Type": {ct}})
			if msg := seeder.ErrorBody(t, hdr, b); code != tc.wantCode || !strings.Contains(msg, tc.wantText) {
				t.Errorf("HTTP %d %q, want %d naming %s", code, msg, tc.wantCode, tc.wantText)
			}
			h.AssertUnchanged(t, before, "stable", "1.0.0")
			// What agents could fetch: the pieces target of the refused release.
			pieces := "targets/releases/stable/1.0.0/" + sumHex(sg.Pieces) + ".pieces"
			if code, _, _ := h.Do(t, http.MethodGet, api.PathTUF+pieces, h.Agent, nil, nil); code != http.StatusNotFound {
				t.Errorf("GET /tuf/%s after a refused publish: HTTP %d, want 404", pieces, code)
			}
		})
	}
}

func sumHex(b []byte) string {
	d := sha256.Sum256(b)
	return hex.EncodeToString(d[:])
}

func TestServerVersionOrder(t *testing.T) {
	h, ac := newSeeder(t)
	ctx := context.Background()
	src := t.TempDir()
	path := seeder.WriteTree(t, src, "app", appFiles())
	initial := h.TargetsJSON(t)
	if _, err := ac.Publish(ctx, h.Keys, "stable", "2.0.0", path); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, channel, version string
		stale                  bool // sign against the targets before 2.0.0
		wantCode               int
	}{
		{name: "lower version", channel: "stable", version: "1.0.0", wantCode: http.StatusConflict},
		{name: "same version replayed", channel: "stable", version: "2.0.0", stale: true, wantCode: http.StatusConflict},
		{name: "same version with a v", channel: "stable", version: "v2.0.0", wantCode: http.StatusConflict},
		{name: "pre-release of the current version", channel: "stable", version: "2.0.0-rc.1", wantCode: http.StatusConflict},
		{name: "higher version signed against stale targets", channel: "stable", version: "3.0.0", stale: true, wantCode: http.StatusConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := h.Snapshot(t)
			current := h.TargetsJSON(t)
			if tc.stale {
				current = initial
			}
			sg := seeder.Sign(t, h.Keys, current, tc.channel, tc.version, path)
			ct, body := seeder.Body(t, sg.Targets, sg.Parts)
			code, b := h.Post(t, tc.channel, tc.version, ct, body)
			if code != tc.wantCode {
				t.Errorf("HTTP %d %s, want %d", code, b, tc.wantCode)
			}
			h.AssertUnchanged(t, before, tc.channel, tc.version)
		})
	}
	t.Run("another channel has its own order", func(t *testing.T) {
		other := seeder.WriteTree(t, src, "beta-app", appFiles())
		sg := seeder.Sign(t, h.Keys, h.TargetsJSON(t), "beta", "1.0.0", other)
		ct, body := seeder.Body(t, sg.Targets, sg.Parts)
		if code, b := h.Post(t, "beta", "1.0.0", ct, body); code != http.StatusCreated {
			t.Errorf("HTTP %d %s, want 201", code, b)
		}
	})
}

// mtimes returns path -> mtime of every regular file under dir.
func mtimes(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = fi.ModTime()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRestart(t *testing.T) {
	keys := seeder.NewDeployment(t)
	data := filepath.Join(t.TempDir(), "data")
	files := appFiles()
	path := seeder.WriteTree(t, t.TempDir(), "app", files)

	run := func() (url string, stop func() error) {
		addr := seeder.FreeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- seeder.Run(ctx, seeder.Config{DataDir: data, Listen: addr, KeysDir: keys}) }()
		stopped := false
		stop = func() error {
			if stopped {
				return nil
			}
			stopped = true
			cancel()
			return <-done
		}
		t.Cleanup(func() { stop() })
		seeder.WaitHealthy(t, "http://"+addr, done)
		return "http://" + addr, stop
	}

	url, stop := run()
	ac, err := adminclient.New(url, keys, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := ac.Publish(context.Background(), keys, "stable", "1.0.0", path)
	if err != nil {
		t.Fatal(err)
	}
	st1, err := ac.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	agent := seeder.ReadTok(t, keys, "admin.token") // the admin may read what agents read
	targets1 := getBody(t, url+api.PathTUF+"targets.json", agent)
	relDir := filepath.Join(data, "releases", "stable", "1.0.0")
	before := mtimes(t, relDir)
	if len(before) != len(files) {
		t.Fatalf("release directory holds %d files, want %d", len(before), len(files))
	}
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after its context ended, want nil", err)
	}

	url, stop = run()
	ac, err = adminclient.New(url, keys, "")
	if err != nil {
		t.Fatal(err)
	}
	st2, err := ac.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := seeder.FindRelease(*st2, "stable", "1.0.0")
	if r == nil {
		t.Fatalf("after restart Status lists %+v, want stable 1.0.0", st2.Releases)
	}
	if r1 := seeder.FindRelease(*st1, "stable", "1.0.0"); r.InfoHash != res.InfoHash || r.Length != res.Length || !r.PublishedAt.Equal(r1.PublishedAt) {
		t.Errorf("after restart %+v, before %+v", *r, *r1)
	}
	if targets2 := getBody(t, url+api.PathTUF+"targets.json", agent); !bytes.Equal(targets1, targets2) {
		t.Errorf("targets.json changed across the restart")
	}
	after := mtimes(t, relDir)
	for p, m := range before {
		if !after[p].Equal(m) {
			t.Errorf("%s rewritten at restart: mtime %s -> %s", p, m, after[p])
		}
	}
	// Still served, and the next version is still ordered after it.
	if b := getBody(t, url+api.PathWebSeed+"stable/1.0.0/app/sub/b.bin", agent); !bytes.Equal(b, files["sub/b.bin"]) {
		t.Errorf("web seed after restart: %d bytes, want the file's %d", len(b), len(files["sub/b.bin"]))
	}
	if _, err := ac.Publish(context.Background(), keys, "stable", "1.0.0", path); !errors.Is(err, adminclient.ErrVersionOrder) {
		t.Errorf("republish after restart: %v, want ErrVersionOrder", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("second Run returned %v, want nil", err)
	}
}

// getBody GETs url with a bearer token and wants 200.
func getBody(t *testing.T, url, token string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d %v", url, resp.StatusCode, err)
	}
	return b
}

// TestSameContentTwoReleases: promoting the very same build to another channel (or publishing it
// again as a new version) is an ordinary publish: it must be stored and served, and the seeder
// must still start afterwards.
func TestSameContentTwoReleases(t *testing.T) {
	keys := seeder.NewDeployment(t)
	data := filepath.Join(t.TempDir(), "data")
	h := seeder.StartHarness(t, keys, data)
	ac, err := adminclient.New(h.URL, keys, "")
	if err != nil {
		t.Fatal(err)
	}
	path := seeder.WriteTree(t, t.TempDir(), "app", appFiles())
	ctx := context.Background()
	if _, err := ac.Publish(ctx, keys, "beta", "1.0.0", path); err != nil {
		t.Fatal(err)
	}
	before := h.Snapshot(t)
	_, err = ac.Publish(ctx, keys, "stable", "1.0.0", path)
	if err != nil {
		t.Errorf("promote the beta build to stable: %v", err)
		// A refusal must at least leave the signed metadata as it was.
		h.AssertUnchanged(t, before, "stable", "1.0.0")
	} else if seeder.FindRelease(h.Status(t), "stable", "1.0.0") == nil {
		t.Errorf("Status does not list stable 1.0.0")
	}
	h.Stop()

	// The seeder must start again on its data, whatever it answered.
	h = seeder.StartHarness(t, keys, data)
	st := h.Status(t)
	if seeder.FindRelease(st, "beta", "1.0.0") == nil {
		t.Errorf("after restart Status lists %+v, want beta 1.0.0", st.Releases)
	}
}
