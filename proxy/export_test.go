package proxy

import "time"

// SetClientCheckEvery changes how often a silent exchange looks at its
// client, for tests; it returns the function that puts it back.
func SetClientCheckEvery(d time.Duration) (restore func()) {
	old := clientCheckEvery
	clientCheckEvery = d
	return func() { clientCheckEvery = old }
}

// SetWriteCheckEvery changes how long a stalled write of a body waits
// before it looks for an early answer, for tests; it returns the function
// that puts it back.
func SetWriteCheckEvery(d time.Duration) (restore func()) {
	old := writeCheckEvery
	writeCheckEvery = d
	return func() { writeCheckEvery = old }
}
