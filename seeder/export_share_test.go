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
