package swarm

import (
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/verify"
)

// BenchmarkVerifyPiece measures the piece check every received piece goes through (read the
// stored piece back, SHA-256 it, compare with the signed digest) against plain SHA-256 of a
// piece already in memory, interleaved in one run so the ratio holds on a noisy machine.
// Reported: piece-MB/s, sha256-MB/s and ratio (issue 5 asks for at least 0.9). Pieces are
// those of the lab's 256 MiB release.
func BenchmarkVerifyPiece(b *testing.B) {
	const size = 64 << 20
	pieceLength := release.PieceLength(256 << 20)
	r := buildFileReleaseWith(b, "bench.bin", randBytes(5, size), pieceLength)
	c := newClient(b, Config{PersistCompletion: true}) // as an agent: no part files, kept file handles
	tt, err := c.Add(r.spec(r.parent))
	if err != nil {
		b.Fatal(err)
	}
	settle(b, tt)
	n := r.m.NumPieces()
	pieces := make([]*verifiedPiece, n)
	for i := range pieces {
		pieces[i] = tt.t.Piece(i).Storage().PieceImpl.(*verifiedPiece)
	}
	mem := randBytes(6, int(pieceLength))
	var inPiece, inMem time.Duration
	var sink verify.Digest
	b.SetBytes(pieceLength)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		h, err := pieces[i%n].SelfHash()
		inPiece += time.Since(start)
		if err != nil || h.IsZero() {
			b.Fatalf("piece %d did not verify: %v", i%n, err)
		}
		start = time.Now()
		sink = verify.Sum(mem)
		inMem += time.Since(start)
	}
	_ = sink
	mb := float64(b.N) * float64(pieceLength) / 1e6
	b.ReportMetric(mb/inPiece.Seconds(), "piece-MB/s")
	b.ReportMetric(mb/inMem.Seconds(), "sha256-MB/s")
	b.ReportMetric(inMem.Seconds()/inPiece.Seconds(), "ratio")
}
