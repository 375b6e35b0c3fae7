package httpadapt

import (
	"net"
	"sync"
	"time"

	"github.com/nocrd/nocrd/internal/rawio"
)

// peerCheckEvery is how often a connection whose handler is still running
// is checked for a client that has gone.
var peerCheckEvery = 5 * time.Second

// watchPeer calls gone, once, when the client at the other end of c has
// closed or reset the connection, checking every peerCheckEvery until
// stop is called. net/http notices a client that goes while a handler
// runs (it reads the connection in the background) and cancels the
// request's context; fasthttp reads nothing until the response is
// written, so without this a handler that waits (an event stream with
// nothing to send, a long tool call) would hold its goroutines, its MCP
// session and the connection's descriptor, in CLOSE_WAIT, until it wrote
// again, which a quiet stream may never do. A check is one system call,
// which does not read: bytes the client sent meanwhile (a pipelined
// request) stay for fasthttp. Outside Linux nothing is checked.
func watchPeer(c net.Conn, gone func()) (stop func()) {
	if rawio.Socket(c) == nil {
		return func() {}
	}
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	check := func() {
		closed := rawio.Gone(c)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case stopped:
		case closed:
			stopped = true
			gone()
		default:
			t.Reset(peerCheckEvery)
		}
	}
	mu.Lock()
	t = time.AfterFunc(peerCheckEvery, check)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}
