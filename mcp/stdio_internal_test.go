package mcp

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

type nopReadCloser struct{ io.Reader }

func (nopReadCloser) Close() error { return nil }

// TestStdioDrainWaitsForAnswers: the end of stdin is held back until each
// request read (numbered or named ids, alone or in a batch) is answered;
// notifications and the client's answers to the server's requests are not
// waited for.
func TestStdioDrainWaitsForAnswers(t *testing.T) {
	in := strings.Join([]string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":7,"result":{}}`,
		`[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`,
		`{"jsonrpc":"2.0","id":3,"method":"ping"}`, // no newline: the last message
	}, "\n")
	var out strings.Builder
	d := newStdioDrain(context.Background(), nopReadCloser{strings.NewReader(in)}, nopCloser{&out})
	eof := make(chan struct{})
	go func() {
		defer close(eof)
		_, _ = io.ReadAll(d.reader())
	}()
	w := d.writer()
	for _, answer := range []string{`{"jsonrpc":"2.0","id":1,"result":{}}`, `{"jsonrpc":"2.0","id":"a","result":{}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{}}`, `{"jsonrpc":"2.0","id":2,"result":{}}`} {
		time.Sleep(20 * time.Millisecond)
		select {
		case <-eof:
			t.Fatalf("stdin ended before %s was written", answer)
		default:
		}
		_, _ = io.WriteString(w, answer+"\n")
	}
	time.Sleep(20 * time.Millisecond)
	select {
	case <-eof:
		t.Fatal("stdin ended with request 3 unanswered")
	default:
	}
	_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"no"}}`+"\n")
	select {
	case <-eof:
	case <-time.After(5 * time.Second):
		t.Fatal("stdin did not end once every request was answered")
	}
}

// TestStdioDrainCancelled: a request the client cancels need not be
// answered (MCP's cancellation): stdin's end is not held for it.
func TestStdioDrainCancelled(t *testing.T) {
	in := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"spawn_workspace"}}` + "\n" +
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5,"reason":"enough"}}` + "\n"
	d := newStdioDrain(context.Background(), nopReadCloser{strings.NewReader(in)}, nopCloser{io.Discard})
	eof := make(chan struct{})
	go func() {
		defer close(eof)
		_, _ = io.ReadAll(d.reader())
	}()
	select {
	case <-eof:
	case <-time.After(5 * time.Second):
		t.Fatal("stdin's end was held for a cancelled request")
	}
}

// TestStdioDrainEndsWithContext: a request never answered holds the end
// of stdin only until the context ends.
func TestStdioDrainEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	d := newStdioDrain(ctx, nopReadCloser{strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}` + "\n")}, nopCloser{io.Discard})
	eof := make(chan struct{})
	go func() {
		defer close(eof)
		_, _ = io.ReadAll(d.reader())
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case <-eof:
	case <-time.After(5 * time.Second):
		t.Fatal("stdin did not end when the context did")
	}
}
