package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/internal/clock"
	"github.com/nocrd/nocrd/internal/rawio"
)

// The upstream side of the proxy: one pool of keep-alive connections per
// workspace address, each connection with its own buffers. It replaces
// fasthttp's HostClient, whose streamed responses cost four allocations
// each and whose buffered ones copy the body; here a request allocates
// nothing, and a small body is read straight into the client's response.

const (
	// maxBufferedBody is the largest response body of known length read
	// whole into the client's response; longer bodies, chunked ones and
	// ones that end with the connection are streamed.
	maxBufferedBody = 64 << 10
	// upstreamReadBuffer bounds the response head a workspace may send.
	upstreamReadBuffer  = 16 << 10
	upstreamWriteBuffer = 4 << 10
	// maxIdlePerUpstream bounds the idle connections kept per address.
	maxIdlePerUpstream = 512
	// maxIdleTime is how long an idle connection is kept.
	maxIdleTime = 30 * time.Second
)

// pool holds the idle keep-alive connections to one address.
type pool struct {
	addr   string
	mu     sync.Mutex
	idle   []*upstreamConn // most recently used last
	closed bool
}

// upstreamConn is a connection to a workspace and its buffers.
type upstreamConn struct {
	*idleConn
	pool   *pool
	br     *bufio.Reader
	bw     *bufio.Writer
	usedAt time.Time // when it last went idle
	reused bool
	// checked is set when nothing had come from the workspace when the
	// request went out: the connection is new, or idle found it quiet.
	checked bool

	// raw sends a request from within the wait for its response (see
	// sendAndWait), with flushWait, made once, as the callback.
	raw       syscall.RawConn
	flushWait func(uintptr) bool
	flushed   bool
	flushErr  error
	// early is set when the workspace answered before it took the whole
	// request (see answeredEarly): the connection is not reused.
	early bool
	// peek, made once, is the RawConn callback with which idle and
	// answered look at what has arrived: peekN bytes of it in peekBuf
	// (see rawio.Peek).
	peek    func(uintptr)
	peekBuf [256]byte
	peekN   int
}

// get returns an idle connection, most recently used first, or dials one.
// now is the time, read by the caller. An idle connection is used only if
// nothing has arrived on it since its last response (see
// upstreamConn.idle); that is checked when check is set, for a request
// that cannot be retried, and for any request once the connection has
// been idle for checkIdleAfter.
func (p *Proxy) get(pl *pool, now time.Time, check bool) (*upstreamConn, error) {
	for {
		pl.mu.Lock()
		n := len(pl.idle)
		if n == 0 {
			pl.mu.Unlock()
			break
		}
		c := pl.idle[n-1]
		pl.idle[n-1] = nil
		pl.idle = pl.idle[:n-1]
		pl.mu.Unlock()
		idle := now.Sub(c.usedAt)
		if idle >= maxIdleTime {
			_ = c.Close()
			continue
		}
		if !check && idle < checkIdleAfter {
			c.reused, c.checked = true, false
			return c, nil
		}
		if c.idle() {
			c.reused, c.checked = true, true
			return c, nil
		}
		_ = c.Close()
	}
	nc, err := net.DialTimeout("tcp", pl.addr, p.opts.DialTimeout)
	if err != nil {
		return nil, err
	}
	c := newUpstreamConn(rawio.Wrap(nc), pl, p.opts.UpstreamTimeout)
	c.checked = true
	return c, nil
}

// newUpstreamConn wraps a new connection of pl with its buffers.
func newUpstreamConn(nc net.Conn, pl *pool, timeout time.Duration) *upstreamConn {
	ic := &idleConn{Conn: nc, timeout: timeout}
	c := &upstreamConn{idleConn: ic, pool: pl, br: bufio.NewReaderSize(ic, upstreamReadBuffer), bw: bufio.NewWriterSize(ic, upstreamWriteBuffer)}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw, c.flushWait, c.peek = raw, c.flushThenWait, c.peekArrived
			ic.answered = c.answered
		}
	}
	return c
}

// answered reports, for a write that stalled, whether the workspace has
// answered since the request began to go out, on a connection that was
// quiet when it did (checked): it has closed its end, or sent something
// other than an interim (1xx) response, which a server may send while it
// goes on reading.
func (c *upstreamConn) answered() bool {
	if !c.checked || c.raw == nil {
		return false
	}
	if c.raw.Control(c.peek) != nil {
		return false
	}
	if c.peekN < 0 {
		return true
	}
	return finalAnswer(c.peekBuf[:c.peekN])
}

// finalAnswer reports whether b, the start of what a workspace sent,
// holds more than interim (1xx) responses: the start of a final one, or
// anything else. Too little to tell is false, and so is a 1xx response
// whose end is not in b.
func finalAnswer(b []byte) bool {
	const interim = len("HTTP/1.1 1")
	for len(b) >= interim {
		if !bytes.HasPrefix(b, []byte("HTTP/1.")) || b[interim-2] != ' ' || b[interim-1] != '1' {
			return true
		}
		end := bytes.Index(b, []byte("\r\n\r\n"))
		if end < 0 {
			return false
		}
		b = b[end+4:]
	}
	return false
}

// peekArrived is the peek callback.
func (c *upstreamConn) peekArrived(fd uintptr) { c.peekN = rawio.Peek(fd, c.peekBuf[:]) }

// checkIdleAfter is how long a connection may sit in the pool before it
// is checked even for a request that could be retried. Under load
// connections come back within milliseconds and are not checked.
const checkIdleAfter = 100 * time.Millisecond

// idle reports whether the connection, taken from the pool, can carry a
// request: nothing has come from the workspace since its last response.
// Workspace servers close keep-alive connections that stay idle for a
// while (Node.js after 5 s, gunicorn after 2 s), and a request written
// to such a connection fails without an answer. An idempotent request is
// then retried on a new connection; one that cannot be (a POST, or one
// whose body is streamed) would fail with a 502, so the connection is
// checked first, at the cost of one system call. Some servers also
// answer an idle connection with a 408 of their own before closing it;
// a request sent there would read that 408 as its answer, so every
// request checks a connection idle for checkIdleAfter.
func (c *upstreamConn) idle() bool {
	if c.raw == nil {
		return true
	}
	return c.raw.Control(c.peek) == nil && c.peekN == 0
}

// put returns a connection whose last response was read to its end at
// now.
func (c *upstreamConn) put(now time.Time) {
	pl := c.pool
	c.usedAt = now
	c.client = nil
	if c.br.Buffered() > 0 {
		// The workspace sent more than its answer (a body longer than
		// its Content-Length, a body after a HEAD or a 204): those bytes
		// belong to no request, and the next one would read them as its
		// answer. nginx closes such a connection too.
		_ = c.Close()
		return
	}
	pl.mu.Lock()
	if pl.closed || len(pl.idle) >= maxIdlePerUpstream {
		pl.mu.Unlock()
		_ = c.Close()
		return
	}
	pl.idle = append(pl.idle, c)
	pl.mu.Unlock()
}

// close closes every idle connection; connections in use are closed when
// they come back.
func (pl *pool) close() {
	pl.mu.Lock()
	idle := pl.idle
	pl.idle, pl.closed = nil, true
	pl.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
}

// sweep closes the connections idle for longer than maxIdleTime.
func (pl *pool) sweep(now time.Time) {
	pl.mu.Lock()
	keep := pl.idle[:0]
	var stale []*upstreamConn
	for _, c := range pl.idle {
		if now.Sub(c.usedAt) < maxIdleTime {
			keep = append(keep, c)
		} else {
			stale = append(stale, c)
		}
	}
	clear(pl.idle[len(keep):])
	pl.idle = keep
	pl.mu.Unlock()
	for _, c := range stale {
		_ = c.Close()
	}
}

// errEmptyResponse reports a connection that closed before any response.
var errEmptyResponse = errors.New("upstream closed the connection without a response")

// roundTrip writes the request to the workspace at addr, head as it is
// when it is not nil (a request without a body; req then only gives its
// method), else req, and reads the response head into h, reporting whether the response has no body (HEAD, 1xx, 204,
// 304). The returned connection is the caller's until the body has been
// read (then done) or abandoned (then Close). A kept-alive connection that
// the workspace closed meanwhile fails an idempotent request without a
// streamed body, which is then retried once on a new connection.
//
// now is the time the caller read just before; it stands for the clock
// when the first write and read set their deadlines, which spares two
// reads of the clock per request.
func (p *Proxy) roundTrip(addr string, req *fasthttp.Request, head []byte, h *fasthttp.ResponseHeader, client net.Conn, now time.Time) (*upstreamConn, bool, error) {
	pl := p.pool(addr)
	retryable := !req.IsBodyStream() && (req.Header.IsGet() || req.Header.IsHead() || req.Header.IsPut() || req.Header.IsOptions())
	for {
		c, err := p.get(pl, now, !retryable)
		if err != nil {
			return nil, false, err
		}
		c.client = client
		if err = c.exchange(req, head, h, now); err == nil {
			return c, req.Header.IsHead() || noBody(h.StatusCode()), nil
		}
		_ = c.Close()
		if !c.reused || !retryable || isTimeout(err) || errors.Is(err, errClientGone) {
			return nil, false, err
		}
	}
}

// answerError is a workspace's answer that is not an HTTP/1.x response
// head, or one larger than upstreamReadBuffer.
type answerError struct{ err error }

func (e *answerError) Error() string { return "the workspace's answer: " + e.err.Error() }
func (e *answerError) Unwrap() error { return e.err }

// errClientGone ends an exchange whose client has closed its connection.
var errClientGone = errors.New("the client closed its connection")

// exchange writes the request and reads the response head into h (reset
// first), skipping interim (1xx) answers other than 101 Switching
// Protocols. now is the time the caller read just before: it stands for
// the clock when the first write and read set their deadlines.
func (c *upstreamConn) exchange(req *fasthttp.Request, head []byte, h *fasthttp.ResponseHeader, now time.Time) error {
	c.readNow, c.writeNow = now, now
	c.silent, c.wsilent, c.left, c.early = 0, 0, false, false
	// Cleared in case one was not used.
	defer func() { c.readNow, c.writeNow = time.Time{}, time.Time{} }()
	h.Reset() // names canonicalised as read, for stripHopByHop
	h.SetNoDefaultContentType(true)
	writes := c.writes
	if head != nil {
		if _, err := c.bw.Write(head); err != nil {
			return err
		}
		if err := c.send(writes); err != nil {
			return err
		}
	} else {
		// The client's Content-Type or none: fasthttp would add
		// application/octet-stream to a body that has none. (Set here, as
		// CopyTo and reparse carry the flag of the header they copy.)
		req.Header.SetNoDefaultContentType(true)
		c.stepped = true
		err := req.Write(c.bw)
		if err == nil {
			err = c.send(writes)
		}
		c.stepped = false
		if err != nil {
			return c.answeredEarly(h, err)
		}
	}
	for n := 0; ; n++ {
		if err := h.Read(c.br); err != nil {
			var ne net.Error
			switch {
			case c.left:
				err = errClientGone
			case err == io.EOF:
				err = errEmptyResponse
			case !errors.As(err, &ne):
				// The workspace sent something, but not an HTTP/1.x
				// response head (an HTTP/2-only server, a truncated or
				// oversized head).
				err = &answerError{err}
			}
			return err
		}
		if s := h.StatusCode(); s < 100 || s > 199 || s == http.StatusSwitchingProtocols {
			// The answer goes out in the proxy's own HTTP/1.1, whatever
			// the workspace spoke: an HTTP/1.0 status line over the
			// proxy's chunked framing is a body its client reads raw.
			h.SetProtocol(nil)
			return nil
		}
		if n == 8 {
			return errors.New("upstream sent too many interim responses")
		}
	}
}

// send sends what the request left in the write buffer; writes is the
// count of writes before the request began.
func (c *upstreamConn) send(writes int) error {
	if c.flushWait != nil && c.writes == writes {
		// The whole request is still in the buffer.
		return c.sendAndWait()
	}
	return c.bw.Flush()
}

// answeredEarly reads into h the answer of a workspace that stopped taking
// the request (werr: the write of its body failed) because it had
// answered already: a server may answer before it has read the whole body
// (a 413, a 401 of its own, a handler that ignores the body), then close
// the connection, and the writes that follow fail with EPIPE or
// ECONNRESET; or leave it open without reading, and the write stalls
// (errAnsweredWhileSending, see steppedWrite). Its answer is then in the
// connection, and goes to the client, as it would have without the proxy,
// instead of a 502. Any other failure is werr, and so is any on a
// connection get did not find quiet (checked): what is there might have
// been sent before the request.
func (c *upstreamConn) answeredEarly(h *fasthttp.ResponseHeader, werr error) error {
	if !c.checked || !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.ECONNRESET) && !errors.Is(werr, errAnsweredWhileSending) {
		return werr
	}
	// The workspace has closed its end, or sent something and stopped
	// reading: a read finds what it sent (then, when closed, the end of
	// the connection).
	for range 8 {
		if err := h.Read(c.br); err != nil {
			return werr
		}
		if s := h.StatusCode(); s >= 200 {
			h.SetProtocol(nil)
			c.early = true
			return nil
		}
	}
	return werr
}

// sendAndWait sends the buffered request and waits until the connection
// has something to read.
//
// Reading right after writing, as a plain Read does, almost always finds
// nothing yet: the workspace has not answered. That costs a system call
// per request before the runtime waits for the connection. Instead the
// request is written from within a RawConn read, whose first act is to
// forget any readiness seen before, then the callback returns false and
// the runtime waits. Since the wait began before the request went out, the
// answer cannot come unnoticed in between; the Read that follows finds
// it. Anything that was there before (a close, or bytes the workspace sent
// unasked) shows up the same way it would have with a write then a read:
// the workspace resets the connection, or the bytes are read as the
// response.
func (c *upstreamConn) sendAndWait() error {
	hint := c.readNow // the Read that follows uses it too
	if d, ok := c.next(&c.readUntil, &hint, c.readSpan()); ok {
		if err := c.Conn.SetReadDeadline(d); err != nil {
			return err
		}
	}
	c.flushed, c.flushErr = false, nil
	err := c.raw.Read(c.flushWait)
	if c.flushErr != nil {
		return c.flushErr
	}
	if err != nil && isTimeout(err) {
		// Silent for a read span: the Read that follows waits on, once
		// expired has looked at the client.
		return c.expired(err)
	}
	return err
}

// flushThenWait is sendAndWait's RawConn callback: the first call sends
// the request and asks to wait; the next, once the connection is readable
// (or has failed), ends the wait.
func (c *upstreamConn) flushThenWait(uintptr) bool {
	if c.flushed {
		return true
	}
	c.flushed = true
	c.flushErr = c.bw.Flush()
	return c.flushErr != nil
}

// noBody reports whether a status has no body whatever the headers say.
func noBody(status int) bool {
	return status < 200 || status == http.StatusNoContent || status == http.StatusNotModified
}

// done gives the connection back after a response read to its end at
// now, or closes it when either side asked for that.
func (c *upstreamConn) done(reuse bool, now time.Time) {
	if !reuse {
		_ = c.Close()
		return
	}
	c.put(now)
}

// bodyStream is an upstream response body on its way to the client.
// fasthttp reads it while writing the response and closes it when done;
// Close gives the connection back when the body was read to its end, and
// closes it otherwise.
type bodyStream struct {
	p     *Proxy
	conn  *upstreamConn
	close bool // the connection cannot be reused after this response
	r     io.Reader
	resp  *fasthttp.Response
	// left is what remains of a body of known length, -1 for chunked or
	// close-delimited bodies, which end at io.EOF.
	left   int64
	eof    bool
	failed bool
}

func (s *bodyStream) Read(b []byte) (int, error) {
	if s.left == 0 {
		s.eof = true
		return 0, io.EOF
	}
	if s.left > 0 && int64(len(b)) > s.left {
		b = b[:s.left]
	}
	n, err := s.r.Read(b)
	if s.left > 0 {
		s.left -= int64(n)
		if s.left == 0 {
			s.eof = true
		}
	}
	switch {
	case err == io.EOF:
		s.eof = true
	case err != nil:
		s.failed = true
	}
	return n, err
}

func (s *bodyStream) Close() error {
	err := s.resp.CloseBodyStream()
	if s.eof && !s.failed && !s.close {
		s.conn.put(clock.Mono())
	} else {
		_ = s.conn.Close()
	}
	fasthttp.ReleaseResponse(s.resp)
	*s = bodyStream{p: s.p}
	s.p.streams.Put(s)
	return err
}

// idleConn refreshes its deadlines as reads and writes happen, so the
// timeout bounds silence, not the length of a stream. To spare the runtime
// a timer update on every call, a deadline is moved only once less than
// timeout-deadlineSlack of it is left: the silence allowed is between
// timeout-deadlineSlack and timeout.
type idleConn struct {
	net.Conn
	timeout time.Duration
	// readUntil and writeUntil are the deadlines set, on the monotonic
	// clock (clock.Nanos): the times involved come from clock.Mono.
	readUntil, writeUntil atomic.Int64
	// readNow and writeNow, when set, stand for the clock at the next read
	// or write: the caller has just read it.
	readNow, writeNow time.Time
	writes            int // calls to Write so far
	// client is the connection of the client the exchange in progress
	// answers, nil between exchanges; silent is how long the workspace
	// has been silent, in whole read spans (see expired).
	client net.Conn
	silent time.Duration
	// left is set once expired found the client gone: fasthttp reports
	// a read that fails before the first byte as io.EOF, whatever the
	// error was.
	left bool
	// stepped is set while a request with a body is written, wsilent is
	// how long its writes have made no progress, in write steps (see
	// steppedWrite), and answered, when set, reports whether the
	// workspace has sent something meanwhile (upstreamConn.answered).
	stepped  bool
	wsilent  time.Duration
	answered func() bool
}

// writeCheckEvery is how long a write may make no progress before the
// proxy looks at whether the workspace has answered already: a workspace
// that answers a request before reading its body, and then neither reads
// it nor closes the connection, would otherwise hold the answer back
// until the upstream timeout. It is long enough that a server which
// answers while it reads on (full duplex) is unlikely to pause its reads
// that long, which would cut its body short.
var writeCheckEvery = 5 * time.Second

// errAnsweredWhileSending ends the write of a request body the workspace
// stopped taking after it had sent something: its answer (see
// answeredEarly).
var errAnsweredWhileSending = errors.New("the workspace answered before it took the whole request")

// clientCheckEvery is how long a workspace may stay silent before the
// proxy looks at whether the client it is answering is still there.
var clientCheckEvery = 5 * time.Second

// deadlineSlack is how stale an idleConn deadline may get before it is
// moved; timeouts shorter than four times it are kept exact.
const deadlineSlack = time.Second

// next returns the deadline, span from now, to set before an operation,
// or false when the current one, until, is recent enough. It uses and
// clears *hint when set.
func (c *idleConn) next(until *atomic.Int64, hint *time.Time, span time.Duration) (time.Time, bool) {
	now := *hint
	if now.IsZero() {
		now = clock.Mono()
	} else {
		*hint = time.Time{}
	}
	slack := deadlineSlack
	if span < 4*deadlineSlack {
		slack = 0
	}
	if until.Load()-clock.Nanos(now) > int64(span-slack) {
		return time.Time{}, false
	}
	d := now.Add(span)
	until.Store(clock.Nanos(d))
	return d, true
}

// readSpan is how far ahead a read deadline is set: what is left of the
// timeout in the workspace's present silence, or clientCheckEvery when
// that is shorter, so that a long silence is cut into steps at which the
// client is looked at, the last one ending at the timeout.
func (c *idleConn) readSpan() time.Duration { return min(c.timeout-c.silent, clientCheckEvery) }

// expired decides what a read deadline that passed (err) means. Once the
// workspace has been silent for the timeout, it is err; before that, if
// the client has gone, errClientGone, so that the workspace's connection
// is closed and the workspace can tell (nginx's proxy_ignore_client_abort
// off); otherwise nil: read on.
func (c *idleConn) expired(err error) error {
	c.silent += c.readSpan()
	switch {
	case c.silent >= c.timeout:
		return err
	case c.client != nil && rawio.Gone(c.client):
		c.left = true
		return errClientGone
	}
	return nil
}

func (c *idleConn) Read(b []byte) (int, error) {
	for {
		if d, ok := c.next(&c.readUntil, &c.readNow, c.readSpan()); ok {
			if err := c.Conn.SetReadDeadline(d); err != nil {
				return 0, err
			}
		}
		n, err := c.Conn.Read(b)
		if err == nil || n > 0 || !isTimeout(err) {
			c.silent = 0
			return n, err
		}
		if err = c.expired(err); err != nil {
			return 0, err
		}
	}
}

func (c *idleConn) Write(b []byte) (int, error) {
	c.writes++
	if c.stepped {
		return c.steppedWrite(b)
	}
	if d, ok := c.next(&c.writeUntil, &c.writeNow, c.timeout); ok {
		if err := c.Conn.SetWriteDeadline(d); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(b)
}

// steppedWrite is Write for a request with a body: the timeout still
// bounds how long it may make no progress, but a write the workspace does
// not take for writeCheckEvery looks at whether the workspace has answered
// meanwhile, and if it has ends with errAnsweredWhileSending. Its
// deadline is set on every call (a timer update, which a request head
// alone is spared).
func (c *idleConn) steppedWrite(b []byte) (int, error) {
	done := 0
	for {
		span := min(c.timeout-c.wsilent, writeCheckEvery)
		now := c.writeNow
		if now.IsZero() {
			now = clock.Mono()
		} else {
			c.writeNow = time.Time{}
		}
		d := now.Add(span)
		if err := c.Conn.SetWriteDeadline(d); err != nil {
			return done, err
		}
		c.writeUntil.Store(clock.Nanos(d))
		n, err := c.Conn.Write(b[done:])
		done += n
		if n > 0 {
			c.wsilent = 0
		}
		if err == nil || !isTimeout(err) {
			return done, err
		}
		if c.wsilent += span; c.wsilent >= c.timeout {
			return done, err
		}
		if c.answered != nil && c.answered() {
			return done, errAnsweredWhileSending
		}
	}
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, fasthttp.ErrTimeout) || errors.As(err, &ne) && ne.Timeout()
}
