package seeder_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/seeder"
)

// TestShare: the origin's scheduler hands every piece out once, in order, then 204; a want
// list gets the least-given piece of the list; the pieces put together are the release.
func TestShare(t *testing.T) {
	h, ac := newSeeder(t)
	data := seeder.Pattern(1<<20+5, 7) // five pieces of 256 KiB, the last of 5 bytes
	path := seeder.WriteTree(t, t.TempDir(), "app", map[string][]byte{"big.bin": data})
	pub, err := ac.Publish(context.Background(), h.Keys, "stable", "1.0.0", path)
	if err != nil {
		t.Fatal(err)
	}
	share := func(url, body string) (int, int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, h.URL+url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+h.Agent)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		i, _ := strconv.Atoi(resp.Header.Get(api.HeaderPiece))
		return resp.StatusCode, i, b
	}
	url := api.PathShare + "stable/1.0.0"
	release := h.TakeShareSlots()
	if code, _, _ := share(url, ""); code != http.StatusTooManyRequests {
		t.Fatalf("share with every slot busy: HTTP %d, want 429", code)
	}
	release()
	var got []byte
	for want := range pub.Pieces {
		code, i, b := share(url, "")
		if code != http.StatusOK || i != want {
			t.Fatalf("share %d: HTTP %d, piece %d", want, code, i)
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the pieces handed out are not the release")
	}
	if code, _, _ := share(url, ""); code != http.StatusNoContent {
		t.Fatalf("share after every piece went out: HTTP %d, want 204", code)
	}
	body, _ := json.Marshal(api.ShareRequest{Want: []int{1, 3}})
	if code, i, _ := share(url, string(body)); code != http.StatusNoContent {
		t.Fatalf("want [1 3] just after they were sent: HTTP %d, piece %d, want 204 (settling)", code, i)
	}
	h.Unsettled()
	// Pieces 1 and 3 were given once; 1 again now, so 3 is the least given next.
	for _, want := range []int{1, 3, 1} {
		body, _ := json.Marshal(api.ShareRequest{Want: []int{1, 3}})
		if code, i, _ := share(url, string(body)); code != http.StatusOK || i != want {
			t.Fatalf("want [1 3]: HTTP %d, piece %d, want piece %d", code, i, want)
		}
	}
	for _, tc := range []struct {
		name, url, body string
		code            int
	}{
		{"want only pieces out of range", url, `{"want":[-1,99]}`, http.StatusNoContent},
		{"bad body", url, `{"want":"all"}`, http.StatusBadRequest},
		{"unknown release", api.PathShare + "stable/9.9.9", "", http.StatusNotFound},
		{"oversize body", url, `{"want":[` + strings.Repeat("1,", 40<<10) + `1]}`, http.StatusBadRequest},
	} {
		if code, _, _ := share(tc.url, tc.body); code != tc.code {
			t.Errorf("%s: HTTP %d, want %d", tc.name, code, tc.code)
		}
	}
}
