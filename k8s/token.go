package k8s

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"k8s.io/client-go/rest"
)

// tokenClients bounds the clients ForToken keeps, one per token seen
// lately; each holds its own discovery cache.
const tokenClients = 64

// ForToken returns a client with c's scope that calls the API server with
// token as its only credential, as k-mcp calls it with each caller's own
// token: what it may do is what RBAC grants that token's identity, and
// nothing of c's own credentials (client certificate, token, exec plugin,
// impersonation) goes with it. Clients are kept per token (by its
// SHA-256), so a caller's discovery is not repeated on every call.
func (c *Client) ForToken(token string) (*Client, error) {
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		return nil, errors.New("a bearer token must be one non-empty word")
	}
	key := sha256.Sum256([]byte(token))
	c.byTokenOnce.Do(func() { c.byToken, _ = lru.New[[32]byte, *Client](tokenClients) })
	if tc, ok := c.byToken.Get(key); ok {
		return tc, nil
	}
	rc := rest.AnonymousClientConfig(c.rest) // the server and its CA, no credential
	rc.BearerToken = token
	tc, err := NewForConfig(c.cfg, rc)
	if err != nil {
		return nil, fmt.Errorf("client for the caller's token: %w", err)
	}
	tc.callerToken = true
	c.byToken.Add(key, tc)
	return tc, nil
}

// tokenCache is the Client's state for ForToken.
type tokenCache struct {
	byTokenOnce sync.Once
	byToken     *lru.Cache[[32]byte, *Client]
	// callerToken says this client calls with a caller's own token.
	callerToken bool
}
