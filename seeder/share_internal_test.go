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

// TestSharesSettling: a piece asked for by an agent that lacks it is not handed out while a share
// of it is being sent, nor for settling after.
func TestSharesSettling(t *testing.T) {
	const n = 4
	ctx := context.Background()
	var sh shares
	first, ok := sh.pick(ctx, "a", n, nil)
	if !ok {
		t.Fatal("a got no piece")
	}
	want := []int{first}
	if i, ok := sh.pick(ctx, "b", n, want); ok {
		t.Fatalf("b got piece %d while it was being sent to a", i)
	}
	sh.sent(first)
	if i, ok := sh.pick(ctx, "b", n, want); ok {
		t.Fatalf("b got piece %d just after it was sent to a", i)
	}
	second, _ := sh.pick(ctx, "a", n, nil)
	sh.sent(second)
	time.Sleep(settling + settling/10)
	i, ok := sh.pick(ctx, "b", n, []int{first, second, 99, -1})
	if !ok || i != first && i != second {
		t.Fatalf("b asked for pieces %d and %d once settled and got %d, %v", first, second, i, ok)
	}
	if j, ok := sh.pick(ctx, "c", n, []int{i}); ok {
		t.Fatalf("c got piece %d while it was being sent to b", j)
	}
	sh.sent(i)
}
