package seeder

import (
	"context"
	"testing"
	"time"
)

// TestSharesFair: an agent handed more than fairSlack pieces beyond another agent still pulling
// waits until that one catches up, or fairHold passes, or its request ends; an agent that
// stopped pulling holds nobody back.
func TestSharesFair(t *testing.T) {
	const n = 100
	ctx := context.Background()
	var sh shares
	pick := func(who string) int {
		t.Helper()
		i, ok := sh.pick(ctx, who, n, nil)
		if !ok {
			t.Fatalf("%s got no piece", who)
		}
		return i
	}
	for range 3 {
		pick("a") // b has not asked yet: nobody to wait for
	}
	pick("b")
	pick("a") // a: 4, b: 1; a is now fairSlack+1 ahead

	got := make(chan int, 1)
	go func() { got <- pick("a") }()
	select {
	case i := <-got:
		t.Fatalf("a, 3 pieces ahead of b, got piece %d at once", i)
	case <-time.After(fairHold / 5):
	}
	b := pick("b") // b catches up: a's request goes on
	select {
	case i := <-got:
		if i != b+1 {
			t.Errorf("a got piece %d, want %d (the one after b's)", i, b+1)
		}
	case <-time.After(fairHold / 2):
		t.Fatal("a still waits after b caught up")
	}

	// b stops pulling: after fairHold a's request is served anyway, and once b has not asked
	// for fairActive, a waits no more.
	pick("a")
	began := time.Now()
	pick("a")
	if waited := time.Since(began); waited < fairHold/2 {
		t.Errorf("a waited %v for b, want about %v", waited, fairHold)
	}
	sh.mu.Lock()
	sh.takers["b"].asked = time.Now().Add(-fairActive - time.Second)
	sh.mu.Unlock()
	done := make(chan struct{})
	go func() { pick("a"); close(done) }()
	select {
	case <-done:
	case <-time.After(fairHold / 2):
		t.Fatal("a waits for b, which stopped pulling")
	}

	// A request that ends while it waits gets nothing.
	pick("c")
	for range 4 {
		pick("d") // d: 4, c: 1
	}
	cctx, cancel := context.WithCancel(ctx)
	res := make(chan bool, 1)
	go func() { _, ok := sh.pick(cctx, "d", n, nil); res <- ok }()
	time.Sleep(fairHold / 10)
	cancel()
	if ok := <-res; ok {
		t.Error("a request that ended while it waited got a piece")
	}
}
