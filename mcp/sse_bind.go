package mcp

import (
	"bytes"
	"context"
	"net/http"
	"sync"

	sdkauth "github.com/modelcontextprotocol/go-sdk/auth"
	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// tokenInfo returns the verified token a request carries: the streamable
// transport hands it over with each request; the legacy SSE transport
// does not, and its requests run on the context of the GET that opened
// the session's event stream, which the bearer-token middleware verified
// (sseSessions makes sure the messages come from that same user).
func tokenInfo(ctx context.Context, ex *mcpsdk.RequestExtra) *sdkauth.TokenInfo {
	if ex != nil && ex.TokenInfo != nil {
		return ex.TokenInfo
	}
	return sdkauth.TokenInfoFromContext(ctx)
}

// sseSessions binds each legacy SSE session to the user whose GET opened
// it. go-sdk binds a streamable session to its user, but a message POSTed
// to an SSE session's endpoint runs as whoever opened the session, so
// without this a caller who learnt another's session id would act as
// them. A POST from another user, or to a session this process did not
// see opened, is answered 404, as go-sdk answers an unknown session.
type sseSessions struct {
	mu    sync.Mutex
	users map[string]string // session id -> user
}

func newSSESessions() *sseSessions { return &sseSessions{users: map[string]string{}} }

func (b *sseSessions) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var user string
		if ti := sdkauth.TokenInfoFromContext(r.Context()); ti != nil {
			user = ti.UserID
		}
		switch r.Method {
		case http.MethodGet:
			sw := &sessionSniffer{ResponseWriter: w}
			sw.found = func(id string) {
				b.mu.Lock()
				b.users[id] = user
				b.mu.Unlock()
			}
			defer func() {
				if sw.id != "" {
					b.mu.Lock()
					delete(b.users, sw.id)
					b.mu.Unlock()
				}
			}()
			next.ServeHTTP(sw, r)
			return
		case http.MethodPost:
			id := r.URL.Query().Get("sessionid")
			b.mu.Lock()
			owner, ok := b.users[id]
			b.mu.Unlock()
			if !ok || owner != user {
				writeError(w, http.StatusNotFound, "session not found", "no SSE session "+id+" of this caller")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// sessionSniffer passes an SSE stream through and reads the session id
// from its first event (event: endpoint, data: <path>?sessionid=<id>),
// before the client can see it.
type sessionSniffer struct {
	http.ResponseWriter
	head  []byte
	id    string
	done  bool
	found func(id string)
}

func (s *sessionSniffer) Write(p []byte) (int, error) {
	if !s.done {
		s.head = append(s.head, p...)
		if end := bytes.Index(s.head, []byte("\n\n")); end >= 0 {
			s.done = true
			const key = "sessionid="
			if i := bytes.Index(s.head[:end], []byte(key)); i >= 0 {
				id := s.head[i+len(key) : end]
				if j := bytes.IndexAny(id, "&\r\n"); j >= 0 {
					id = id[:j]
				}
				s.id = string(id)
				s.found(s.id)
			}
			s.head = nil
		} else if len(s.head) > 4<<10 {
			s.done, s.head = true, nil // no endpoint event: nothing to bind
		}
	}
	return s.ResponseWriter.Write(p)
}

// Flush keeps the stream's events flowing.
func (s *sessionSniffer) Flush() { _ = http.NewResponseController(s.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the connection.
func (s *sessionSniffer) Unwrap() http.ResponseWriter { return s.ResponseWriter }
