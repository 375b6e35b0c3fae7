// Package httpadapt serves a net/http handler from a fasthttp server
// without buffering its response: status and headers go out when the
// handler commits them, and every write reaches the client as soon as the
// handler makes it, so server-sent event streams (MCP progress
// notifications, GET event streams) survive the hand-over. fasthttp's own
// adaptor buffers whole responses, which would hold such streams forever.
package httpadapt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/internal/lazydeadline"
)

// MaxRequestBody bounds the request bodies handed to the handler; they are
// read whole before it runs, so that nothing reads the connection after
// the fasthttp handler returns.
const MaxRequestBody = 16 << 20

// Adapter runs h for fasthttp requests.
type Adapter struct {
	h           http.Handler
	log         *slog.Logger
	bodyTimeout time.Duration
	base        context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup
}

// New returns an adapter for h. bodyTimeout, when positive, bounds how
// long the client may stay silent while it sends a request body (408
// past it). Close ends the handlers still running.
func New(h http.Handler, log *slog.Logger, bodyTimeout time.Duration) *Adapter {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Adapter{h: h, log: log, bodyTimeout: bodyTimeout, base: ctx, cancel: cancel}
}

// Close cancels the context of every running handler and waits for them.
func (a *Adapter) Close() {
	a.cancel()
	a.wg.Wait()
}

// ServeFastHTTP serves one request with the net/http handler.
func (a *Adapter) ServeFastHTTP(ctx *fasthttp.RequestCtx) {
	r, err := a.request(ctx)
	if err != nil {
		// The body may be part read: what is left of it cannot be told
		// from a next request.
		ctx.SetConnectionClose()
		ctx.Response.SetStatusCode(err.status)
		ctx.Response.Header.SetContentType("application/json")
		ctx.Response.SetBodyString(`{"error":` + strconv.Quote(http.StatusText(err.status)) + `,"detail":` + strconv.Quote(err.detail) + `}`)
		return
	}
	rctx, cancel := context.WithCancel(context.WithValue(a.base, http.LocalAddrContextKey, ctx.LocalAddr()))
	r = r.WithContext(rctx)
	pr, pw := io.Pipe()
	w := &writer{header: http.Header{}, pw: pw, committed: make(chan struct{})}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					a.log.Error("HTTP handler panicked", "path", r.URL.Path, "panic", v)
				}
				w.commit(http.StatusInternalServerError)
				_ = pw.CloseWithError(io.ErrUnexpectedEOF)
				return
			}
			w.commit(http.StatusOK)
			_ = pw.Close()
		}()
		a.h.ServeHTTP(w, r)
	}()
	// A client that goes ends the handler, as with net/http; watching
	// stops when the response has been written.
	stopWatch := watchPeer(ctx.Conn(), func() {
		cancel()
		_ = pr.CloseWithError(errClientGone)
	})
	<-w.committed

	ctx.Response.SetStatusCode(w.status)
	for k, vs := range w.snapshot {
		if k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection" {
			continue
		}
		for _, v := range vs {
			ctx.Response.Header.Add(k, v)
		}
	}
	if ctx.Request.Header.IsHead() || w.status == http.StatusNoContent || w.status == http.StatusNotModified {
		stopWatch()
		go func() { _, _ = io.Copy(io.Discard, pr); cancel() }()
		ctx.Response.SkipBody = true
		return
	}
	if n, err := strconv.Atoi(w.snapshot.Get("Content-Length")); err == nil && n >= 0 {
		ctx.Response.SetBodyStream(&closer{pr, func() { stopWatch(); cancel() }}, n)
		return
	}
	ctx.Response.SetBodyStreamWriter(func(bw *bufio.Writer) {
		defer cancel()
		defer stopWatch()
		buf := make([]byte, 32<<10)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				if _, werr := bw.Write(buf[:n]); werr != nil || bw.Flush() != nil {
					// The client is gone: end the handler.
					_ = pr.CloseWithError(io.ErrClosedPipe)
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// closer ends the handler's context when fasthttp closes the body.
type closer struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (c *closer) Close() error {
	c.cancel()
	return c.PipeReader.CloseWithError(io.ErrClosedPipe)
}

// errClientGone ends the body of a response whose client has gone.
var errClientGone = errors.New("the client closed the connection")

type requestError struct {
	status int
	detail string
}

// request builds the net/http request; it copies everything it takes from
// ctx, which is reused once the fasthttp handler returns.
func (a *Adapter) request(ctx *fasthttp.RequestCtx) (*http.Request, *requestError) {
	uri := string(ctx.Request.Header.RequestURI())
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, &requestError{http.StatusBadRequest, "malformed request target"}
	}
	var body []byte
	if s := ctx.RequestBodyStream(); s != nil {
		if a.bodyTimeout > 0 {
			s = &lazydeadline.IdleReader{R: s, Conn: ctx.Conn(), Timeout: a.bodyTimeout}
		}
		body, err = io.ReadAll(io.LimitReader(s, MaxRequestBody+1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, &requestError{http.StatusRequestTimeout, "the client stopped sending the request body"}
		}
		if err != nil {
			return nil, &requestError{http.StatusBadRequest, "cannot read the request body"}
		}
	} else {
		body = bytes.Clone(ctx.Request.Body())
	}
	if len(body) > MaxRequestBody {
		return nil, &requestError{http.StatusRequestEntityTooLarge, "request body over " + strconv.Itoa(MaxRequestBody>>20) + " MiB"}
	}
	r := &http.Request{
		Method:        string(ctx.Method()),
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{},
		Host:          string(ctx.Host()),
		RemoteAddr:    ctx.RemoteAddr().String(),
		RequestURI:    uri,
		ContentLength: int64(len(body)),
		Body:          io.NopCloser(bytes.NewReader(body)),
	}
	for k, v := range ctx.Request.Header.All() {
		key := http.CanonicalHeaderKey(string(k))
		if key == "Host" {
			continue
		}
		r.Header.Add(key, string(v))
	}
	if ctx.IsTLS() {
		r.TLS = ctx.TLSConnectionState()
	}
	return r, nil
}

// writer is the handler's ResponseWriter. Headers are committed on the
// first WriteHeader, Write or Flush; the body flows through a pipe, so a
// write returns once the client side has taken it.
type writer struct {
	header    http.Header
	snapshot  http.Header
	status    int
	once      sync.Once
	committed chan struct{}
	pw        *io.PipeWriter
}

func (w *writer) Header() http.Header { return w.header }

func (w *writer) commit(status int) {
	w.once.Do(func() {
		w.status = status
		w.snapshot = w.header.Clone()
		close(w.committed)
	})
}

func (w *writer) WriteHeader(status int) {
	if status >= 100 && status < 200 {
		return // informational answers are not relayed
	}
	w.commit(status)
}

func (w *writer) Write(b []byte) (int, error) {
	w.commit(http.StatusOK)
	return w.pw.Write(b)
}

// Flush commits the headers; written bytes are already on their way.
func (w *writer) Flush() { w.commit(http.StatusOK) }

// FlushError is Flush for http.ResponseController.
func (w *writer) FlushError() error { w.Flush(); return nil }
