package seeder

import (
	"os"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/deploy"
	"github.com/peerpatch/peerpatch/pkg/trust"
)

// FuzzProposed feeds arbitrary bytes as the targets part of a publish: the parser of the
// proposed targets and of the release manifest in them must refuse, never panic.
func FuzzProposed(f *testing.F) {
	dir := f.TempDir() + "/d"
	if err := deploy.Init(dir, time.Now()); err != nil {
		f.Fatal(err)
	}
	signed, err := trust.AddTargets(dir, mustRead(f, dir+"/targets.json"), []trust.Target{
		{Name: "releases/stable/1.0.0/bundle", Length: 3, Custom: []byte(`{"channel":"stable","version":"1.0.0","name":"a","infohash":"` +
			"0123456789abcdef0123456789abcdef01234567" + `","piece_length":262144,"files":[{"path":"a","length":3,"sha256":"` +
			"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" + `"}]}`)},
		{Name: "releases/stable/1.0.0/pieces", Length: 32},
	}, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add([]byte(`{"signed":{"_type":"targets","targets":{}}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		bundle, pieces, m, err := proposed(b, "stable", "1.0.0")
		if err == nil && (bundle == nil || pieces == nil || m == nil || m.Version != "1.0.0") {
			t.Fatalf("accepted without a complete release: %v %v %v", bundle, pieces, m)
		}
	})
}

func mustRead(f *testing.F, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
