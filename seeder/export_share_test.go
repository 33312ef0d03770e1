package seeder

// TakeShareSlots occupies every share slot of the harness's seeder until the returned func runs.
func (h *Harness) TakeShareSlots() (release func()) {
	for range cap(h.S.shareSlots) {
		h.S.shareSlots <- struct{}{}
	}
	return func() {
		for range cap(h.S.shareSlots) {
			<-h.S.shareSlots
		}
	}
}

// Unsettled has the seeder hand a piece asked for to an agent at once, while or just after it
// is sent to another (see settling), for every release published so far.
func (h *Harness) Unsettled() {
	h.S.mu.Lock()
	defer h.S.mu.Unlock()
	for _, l := range h.S.live {
		l.shares.mu.Lock()
		l.shares.unsettled = true
		l.shares.mu.Unlock()
	}
}
