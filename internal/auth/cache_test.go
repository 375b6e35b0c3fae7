package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/nocrd/nocrd/internal/clock"
)

// TestCacheHonoursExpiry: a cached token stops verifying once its exp (and
// the skew) has passed, even though it is still in the cache.
func TestCacheHonoursExpiry(t *testing.T) {
	v, err := NewVerifier(context.Background(), Config{SubJSONPath: "$.sub", JWTSecret: "s3cret"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Minute)
	tok := sign(t, jwa.HS256, []byte("s3cret"), map[string]any{"sub": "alice", "exp": exp.Unix()})
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.cache.Peek(tok); !ok {
		t.Fatal("a verified token was not cached")
	}
	// The coarse clock, a second behind the end, is too close to it to be
	// trusted: the precise one, a second past it, decides.
	v.now = func() time.Time { return exp.Add(ClockSkew + time.Second) }
	v.coarseNow = func() int64 { return exp.Add(ClockSkew - time.Second).UnixNano() }
	var te *TokenError
	if _, err := v.Verify(context.Background(), tok); !errors.As(err, &te) || te.Reason() != "expired" {
		t.Fatalf("a cached token verified past its exp: %v", err)
	}
	if _, ok := v.cache.Peek(tok); ok {
		t.Fatal("an expired cache entry was kept")
	}
	v.now, v.coarseNow = time.Now, clock.CoarseUnixNano

	noExp := sign(t, jwa.HS256, []byte("s3cret"), map[string]any{"sub": "alice"})
	if _, err := v.Verify(context.Background(), noExp); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.cache.Peek(noExp); ok {
		t.Fatal("a token without exp was cached")
	}
	if _, err := v.Verify(context.Background(), "garbage"); !errors.As(err, &te) || !errors.Is(err, ErrInvalidToken) || te.Reason() != "invalid_token" {
		t.Fatalf("garbage: %v", err)
	}
	expired := sign(t, jwa.HS256, []byte("s3cret"), map[string]any{"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix()})
	if _, err := v.Verify(context.Background(), expired); !errors.As(err, &te) || te.Reason() != "expired" {
		t.Fatalf("expired: %v", err)
	}
}

// TestJWKSRotation: a token signed with a key the JWKS does not list yet
// makes the verifier fetch the set again (once, not per request), and a
// changed set invalidates tokens cached under the old one.
func TestJWKSRotation(t *testing.T) {
	newKey := func(kid string) (jwk.Key, jwk.Key) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		priv, _ := jwk.FromRaw(k)
		pub, _ := jwk.FromRaw(k.PublicKey)
		_ = priv.Set(jwk.KeyIDKey, kid)
		_ = pub.Set(jwk.KeyIDKey, kid)
		return priv, pub
	}
	priv1, pub1 := newKey("k1")
	priv2, pub2 := newKey("k2")
	var mu sync.Mutex
	set := jwk.NewSet()
	_ = set.AddKey(pub1)
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(set)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := NewVerifier(ctx, Config{SubJSONPath: "$.sub", JWKSURI: srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	old := sign(t, jwa.ES256, priv1, claims)
	if _, err := v.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	// The issuer rotates: k2 replaces k1.
	mu.Lock()
	set = jwk.NewSet()
	_ = set.AddKey(pub2)
	mu.Unlock()
	before := fetches.Load()
	rotated := sign(t, jwa.ES256, priv2, claims)
	if _, err := v.Verify(ctx, rotated); err != nil {
		t.Fatalf("a token with the new key id was refused: %v", err)
	}
	if fetches.Load() != before+1 {
		t.Fatalf("%d fetches for an unknown kid, want 1", fetches.Load()-before)
	}
	if _, err := v.Verify(ctx, old); err == nil {
		t.Fatal("a token cached under the rotated-out key still verified")
	}
	// More unknown kids within the refresh interval do not hammer the JWKS.
	_, pub3 := newKey("k3")
	_ = pub3
	priv4, _ := newKey("k4")
	for range 5 {
		if _, err := v.Verify(ctx, sign(t, jwa.ES256, priv4, claims)); err == nil {
			t.Fatal("a token with an unpublished key verified")
		}
	}
	if n := fetches.Load(); n != before+1 {
		t.Fatalf("unknown kids caused %d more fetches within %s", n-before-1, jwksRefreshEvery)
	}
}
