package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// HelperArg is the first argument of the lab binary re-executed as a node-side helper: a plain
// HTTP file server (the mirror, the plain-HTTP origin) or a plain HTTP client (the baseline's
// agents). A main that sees it calls HelperMain with the arguments after it.
const HelperArg = "_lab-helper"

// Helper messages, one JSON line each on stdout.
const (
	msgServing = "serving"
	msgFetched = "fetched"
)

// helperLine is what the helpers print.
type helperLine struct {
	Msg   string    `json:"msg"`
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	Bytes int64     `json:"bytes,omitempty"`
	Err   string    `json:"err,omitempty"`
}

// HelperMain runs a helper: "serve --dir D --listen ADDR", "fetch --base URL --list FILE
// --out DIR --start-at UNIXNANO" or "touch --bytes N". It returns the exit status.
func HelperMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "lab helper: want serve, fetch or touch")
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serveMain(args[1:])
	case "fetch":
		err = fetchMain(args[1:])
	case "touch":
		err = touchMain(args[1:])
	default:
		err = fmt.Errorf("unknown helper %q", args[0])
	}
	if err != nil {
		json.NewEncoder(os.Stdout).Encode(helperLine{Msg: "helper failed", Err: err.Error()})
		return 1
	}
	return 0
}

// serveMain serves a directory over plain HTTP until SIGTERM or SIGINT.
func serveMain(args []string) error {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	dir := fl.String("dir", "", "directory to serve")
	listen := fl.String("listen", "", "HOST:PORT")
	if err := fl.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(*dir)), ReadHeaderTimeout: 10 * time.Second}
	json.NewEncoder(os.Stdout).Encode(helperLine{Msg: msgServing})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}

// fetchMain downloads every file named in the list (one slash path per line) from base into
// out, starting at the given instant, and prints when it started and ended.
func fetchMain(args []string) error {
	fl := flag.NewFlagSet("fetch", flag.ContinueOnError)
	base := fl.String("base", "", "base URL")
	list := fl.String("list", "", "file with one slash path per line")
	out := fl.String("out", "", "output directory")
	startAt := fl.Int64("start-at", 0, "Unix time in nanoseconds to start at")
	if err := fl.Parse(args); err != nil {
		return err
	}
	paths, err := readList(*list)
	if err != nil {
		return err
	}
	time.Sleep(time.Until(time.Unix(0, *startAt)))
	res := helperLine{Msg: msgFetched, Start: time.Now()}
	client := &http.Client{}
	for _, p := range paths {
		n, err := fetchFile(client, strings.TrimSuffix(*base, "/")+"/"+escapePath(p), filepath.Join(*out, filepath.FromSlash(p)))
		if err != nil {
			return err
		}
		res.Bytes += n
	}
	res.End = time.Now()
	return json.NewEncoder(os.Stdout).Encode(res)
}

func readList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read file list: %w", err)
	}
	defer f.Close()
	var paths []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			paths = append(paths, l)
		}
	}
	return paths, sc.Err()
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// fetchFile GETs url into dst, retrying for 30s while the server is not up yet.
func fetchFile(client *http.Client, url, dst string) (int64, error) {
	deadline := time.Now().Add(30 * time.Second)
	var resp *http.Response
	for {
		var err error
		resp, err = client.Get(url)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("fetch %s: %w", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("fetch %s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, fmt.Errorf("fetch %s: %w", url, err)
	}
	f, err := os.Create(dst)
	if err != nil {
		return 0, fmt.Errorf("fetch %s: %w", url, err)
	}
	n, err := io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("fetch %s: %w", url, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("fetch %s: %d of %d bytes", url, n, resp.ContentLength)
	}
	return n, nil
}

// parseHelperLine decodes a helper's JSON line; ok is false for other output.
func parseHelperLine(b []byte) (helperLine, bool) {
	var l helperLine
	if err := json.Unmarshal(b, &l); err != nil || l.Msg == "" {
		return l, false
	}
	return l, true
}

// errHelper reports a helper that printed a failure.
var errHelper = errors.New("lab helper failed")
