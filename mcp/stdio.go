package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"sync"
)

// stdioDrain holds back the end of standard input until every request read
// from it has been answered on standard output.
//
// A client may send its requests and close its end of stdin at once: a
// script that pipes a few requests in, as `echo ... | no-crd` allows. go-sdk
// (v1.8.0, go-sdk#1061) takes stdin's EOF for the end of the connection and
// drops the answers its handlers then write, so such a client got nothing.
// With the EOF held back until those answers are out, it gets them, and the
// session ends as before. A client that wants out sooner stops the process
// (the stdio transport's own shutdown sequence: close stdin, then SIGTERM).
type stdioDrain struct {
	ctx context.Context
	in  io.ReadCloser
	out io.WriteCloser

	mu      sync.Mutex
	changed *sync.Cond
	pending map[string]int // request ids read and not yet answered
	inLine  []byte         // the start of a message being read
	outLine []byte         // the start of a message being written
}

// maxTrackedLine bounds the start of a message kept to find its id.
const maxTrackedLine = 16 << 20

func newStdioDrain(ctx context.Context, in io.ReadCloser, out io.WriteCloser) *stdioDrain {
	d := &stdioDrain{ctx: ctx, in: in, out: out, pending: map[string]int{}}
	d.changed = sync.NewCond(&d.mu)
	context.AfterFunc(ctx, func() { // a wait for answers ends with ctx
		d.mu.Lock()
		d.changed.Broadcast()
		d.mu.Unlock()
	})
	return d
}

// reader and writer are the two ends go-sdk's transport is given.
func (d *stdioDrain) reader() io.ReadCloser  { return drainReader{d} }
func (d *stdioDrain) writer() io.WriteCloser { return drainWriter{d} }

type drainReader struct{ d *stdioDrain }
type drainWriter struct{ d *stdioDrain }

func (r drainReader) Read(p []byte) (int, error) {
	d := r.d
	n, err := d.in.Read(p)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inLine = d.messages(append(d.inLine, p[:n]...), d.requested)
	if len(d.inLine) > maxTrackedLine {
		d.inLine = nil // go-sdk refuses it anyway (DefaultMaxLineLength)
	}
	if err == io.EOF {
		d.requested(d.inLine) // a last message without its newline
		d.inLine = nil
		for len(d.pending) > 0 && d.ctx.Err() == nil {
			d.changed.Wait()
		}
	}
	return n, err
}

func (r drainReader) Close() error { return r.d.in.Close() }

func (w drainWriter) Write(p []byte) (int, error) {
	d := w.d
	n, err := d.out.Write(p)
	d.mu.Lock()
	d.outLine = d.messages(append(d.outLine, p[:n]...), d.answered)
	d.mu.Unlock()
	return n, err
}

func (w drainWriter) Close() error { return w.d.out.Close() }

// messages hands each complete line of buf to f and returns what is left
// of it; mu is held.
func (d *stdioDrain) messages(buf []byte, f func([]byte)) []byte {
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return buf
		}
		f(buf[:i])
		buf = buf[i+1:]
	}
}

// envelope is what tells JSON-RPC messages apart: a request has a method
// and an id, a response an id and no method, a notification no id. A
// cancellation names the request it cancels, which need not be answered.
type envelope struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params struct {
		RequestID json.RawMessage `json:"requestId"`
	} `json:"params"`
}

// each calls f for the message in line, or for each message of a batch.
func each(line []byte, f func(envelope)) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return
	}
	if line[0] == '[' {
		var batch []envelope
		if json.Unmarshal(line, &batch) == nil {
			for _, m := range batch {
				f(m)
			}
		}
		return
	}
	var m envelope
	if json.Unmarshal(line, &m) == nil {
		f(m)
	}
}

// requested notes the requests a line read from stdin holds, and the
// ones it cancels (MCP lets a server leave those unanswered); mu is held.
func (d *stdioDrain) requested(line []byte) {
	each(line, func(m envelope) {
		switch {
		case m.Method != "" && len(m.ID) > 0 && string(m.ID) != "null":
			d.pending[string(m.ID)]++
		case m.Method == "notifications/cancelled" && len(m.Params.RequestID) > 0:
			delete(d.pending, string(m.Params.RequestID))
			d.changed.Broadcast()
		}
	})
}

// answered notes the answers a line written to stdout holds; mu is held.
func (d *stdioDrain) answered(line []byte) {
	each(line, func(m envelope) {
		if m.Method != "" || len(m.ID) == 0 {
			return
		}
		id := string(m.ID)
		if d.pending[id]--; d.pending[id] <= 0 {
			delete(d.pending, id)
		}
		d.changed.Broadcast()
	})
}
