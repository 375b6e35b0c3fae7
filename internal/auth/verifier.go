package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/nocrd/nocrd/internal/clock"
)

// ClockSkew is how far exp and nbf may be off.
const ClockSkew = 30 * time.Second

// Identity is what a verified token says about its bearer.
type Identity struct {
	Subject string
	Expiry  time.Time
	Claims  map[string]any
	// ClaimsJSON is the token's payload as the issuer signed it, compacted:
	// the claims a route policy sees. Shared; never modify it.
	ClaimsJSON []byte
}

// ErrInvalidToken is wrapped by every verification failure.
var ErrInvalidToken = errors.New("invalid token")

// TokenError is a refused token and the reason, one of expired,
// not_yet_valid, wrong_issuer, wrong_audience, bad_signature, no_subject
// and invalid_token. It wraps ErrInvalidToken.
type TokenError struct {
	reason string
	err    error
}

func (e *TokenError) Error() string  { return "invalid token: " + e.err.Error() }
func (e *TokenError) Reason() string { return e.reason }
func (e *TokenError) Unwrap() []error {
	return []error{ErrInvalidToken, e.err}
}

func tokenError(err error) *TokenError {
	reason := "invalid_token"
	switch {
	case errors.Is(err, jwt.ErrTokenExpired()):
		reason = "expired"
	case errors.Is(err, jwt.ErrTokenNotYetValid()):
		reason = "not_yet_valid"
	case errors.Is(err, jwt.ErrInvalidIssuer()):
		reason = "wrong_issuer"
	case errors.Is(err, jwt.ErrInvalidAudience()):
		reason = "wrong_audience"
	case strings.Contains(err.Error(), "verify"):
		reason = "bad_signature"
	}
	return &TokenError{reason: reason, err: err}
}

// CacheSize bounds how many verified tokens are remembered.
const CacheSize = 8192

// jwksRefreshEvery is the least time between refreshes of the JWKS caused
// by tokens naming an unknown key id.
const jwksRefreshEvery = 30 * time.Second

// Verifier checks bearer tokens against the configured key: an HMAC secret
// (HS256), a PEM public key (RS256, ES256/384/512 or EdDSA, fixed by the
// key) or a JWKS endpoint. The algorithm always comes from the key, never
// from the token, so "none" and HMAC-with-a-public-key are refused.
//
// Verified tokens are cached, keyed by the whole token, so that a repeated
// token costs a map lookup. An entry is never used past the token's exp,
// and with a JWKS it is dropped when the key set changes, so a rotated-out
// key stops being honoured. Tokens without exp are verified every time.
type Verifier struct {
	subPath string
	opts    []jwt.ParseOption
	cache   *lru.Cache[string, cached]

	jwks        *jwk.Cache
	jwksURI     string
	keys        atomic.Pointer[keyGeneration]
	refreshMu   sync.Mutex
	lastRefresh time.Time
	now         func() time.Time
	// coarseNow (Unix nanoseconds) answers the cache's expiry check
	// unless an entry is within coarseGuard of its end; then now does.
	coarseNow func() int64
}

// coarseGuard is how far behind the coarse clock would have to lag for a
// cached token to be honoured past its end: it lags by a tenth of a
// second unless the process is starved of CPU for seconds.
const coarseGuard = 5 * time.Second

type cached struct {
	id    *Identity
	gen   uint64
	until time.Time
}

// keyGeneration is the key set a cache entry was verified with.
type keyGeneration struct {
	set jwk.Set
	gen uint64
}

// NewVerifier builds the verifier for cfg. A JWKS is fetched in the
// background and kept fresh until ctx ends.
func NewVerifier(ctx context.Context, cfg Config, client *http.Client) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v := &Verifier{subPath: cfg.SubJSONPath, now: time.Now, coarseNow: clock.CoarseUnixNano}
	v.cache, _ = lru.New[string, cached](CacheSize)
	v.keys.Store(&keyGeneration{})
	switch {
	case cfg.JWTSecret != "":
		v.opts = append(v.opts, jwt.WithKey(jwa.HS256, []byte(cfg.JWTSecret)))
	case cfg.JWTPublicKey != "":
		key, err := jwk.ParseKey([]byte(cfg.JWTPublicKey), jwk.WithPEM(true))
		if err != nil {
			return nil, fmt.Errorf("--jwt-public-key/JWT_PUBLIC_KEY: %w", err)
		}
		alg, err := algorithmOf(key)
		if err != nil {
			return nil, fmt.Errorf("--jwt-public-key/JWT_PUBLIC_KEY: %w", err)
		}
		v.opts = append(v.opts, jwt.WithKey(alg, key))
	case cfg.JWKSURI != "":
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		cache := jwk.NewCache(ctx)
		if err := cache.Register(cfg.JWKSURI, jwk.WithMinRefreshInterval(5*time.Minute), jwk.WithHTTPClient(client)); err != nil {
			return nil, fmt.Errorf("--jwks-uri/JWKS_URI: %w", err)
		}
		v.jwks, v.jwksURI = cache, cfg.JWKSURI
		v.opts = append(v.opts, jwt.WithKeySet(jwk.NewCachedSet(cache, cfg.JWKSURI), jws.WithInferAlgorithmFromKey(true)))
	default:
		return nil, errors.New("no verification key: set --jwt-secret/JWT_SECRET, --jwt-public-key/JWT_PUBLIC_KEY or --jwks-uri/JWKS_URI")
	}
	v.opts = append(v.opts, jwt.WithValidate(true), jwt.WithAcceptableSkew(ClockSkew),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return v.now() })))
	if cfg.Issuer != "" {
		v.opts = append(v.opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		v.opts = append(v.opts, jwt.WithAudience(cfg.Audience))
	}
	return v, nil
}

// algorithmOf returns the one signature algorithm a public key verifies.
func algorithmOf(key jwk.Key) (jwa.SignatureAlgorithm, error) {
	switch key.KeyType() {
	case jwa.RSA:
		return jwa.RS256, nil
	case jwa.EC:
		crv, _ := key.Get(jwk.ECDSACrvKey)
		switch crv {
		case jwa.P256:
			return jwa.ES256, nil
		case jwa.P384:
			return jwa.ES384, nil
		case jwa.P521:
			return jwa.ES512, nil
		}
		return "", fmt.Errorf("unsupported EC curve %v", crv)
	case jwa.OKP:
		return jwa.EdDSA, nil
	}
	return "", fmt.Errorf("unsupported key type %v (want RSA, EC or Ed25519)", key.KeyType())
}

// Verify checks a token's signature, expiry, not-before, issuer and
// audience and reads its subject with AUTH_SUB_JSONPATH. token is not
// retained unless it verifies; it may alias a reused buffer. Failures are
// *TokenError.
func (v *Verifier) Verify(ctx context.Context, token string) (*Identity, error) {
	gen := v.generation(ctx)
	if e, ok := v.cache.Get(token); ok {
		if e.gen == gen.gen && v.live(e) {
			return e.id, nil
		}
		v.cache.Remove(token)
	}
	id, err := v.verify(ctx, token)
	if err != nil && v.jwks != nil && v.unknownKey(ctx, token) {
		// A key id the set does not know: the issuer may have rotated
		// keys. Refresh (at most every jwksRefreshEvery) and try again.
		if v.refresh(ctx) {
			gen = v.generation(ctx)
			id, err = v.verify(ctx, token)
		}
	}
	if err != nil {
		return nil, err
	}
	if !id.Expiry.IsZero() {
		v.cache.Add(strings.Clone(token), cached{id: id, gen: gen.gen, until: id.Expiry.Add(ClockSkew)})
	}
	return id, nil
}

// live reports whether a cache entry is still before its end, reading
// the precise clock (about 100 ns) only near that end.
func (v *Verifier) live(e cached) bool {
	if v.coarseNow()+int64(coarseGuard) < e.until.UnixNano() {
		return true
	}
	return v.now().Before(e.until)
}

// Authorize verifies token and returns its subject and claims: the
// Verifier serves as the edge proxy's Authorizer, so proxied and MCP
// requests share one notion of identity.
func (v *Verifier) Authorize(ctx context.Context, token string) (string, []byte, error) {
	id, err := v.Verify(ctx, token)
	if err != nil {
		return "", nil, err
	}
	return id.Subject, id.ClaimsJSON, nil
}

// generation returns the key set in force; with a JWKS, a new set (after a
// refresh) starts a new generation, which invalidates every cache entry.
func (v *Verifier) generation(ctx context.Context) *keyGeneration {
	cur := v.keys.Load()
	if v.jwks == nil {
		return cur
	}
	set, err := v.jwks.Get(ctx, v.jwksURI)
	if err != nil || set == cur.set {
		return cur
	}
	next := &keyGeneration{set: set, gen: cur.gen + 1}
	if v.keys.CompareAndSwap(cur, next) {
		return next
	}
	return v.keys.Load()
}

// unknownKey reports whether token names a key id the current set lacks.
func (v *Verifier) unknownKey(ctx context.Context, token string) bool {
	msg, err := jws.Parse([]byte(token))
	if err != nil || len(msg.Signatures()) == 0 {
		return false
	}
	kid := msg.Signatures()[0].ProtectedHeaders().KeyID()
	if kid == "" {
		return false
	}
	set, err := v.jwks.Get(ctx, v.jwksURI)
	if err != nil {
		return true
	}
	_, ok := set.LookupKeyID(kid)
	return !ok
}

// refresh fetches the JWKS again unless that was done recently; it reports
// whether it fetched.
func (v *Verifier) refresh(ctx context.Context) bool {
	v.refreshMu.Lock()
	defer v.refreshMu.Unlock()
	if v.now().Sub(v.lastRefresh) < jwksRefreshEvery {
		return false
	}
	v.lastRefresh = v.now()
	_, err := v.jwks.Refresh(ctx, v.jwksURI)
	return err == nil
}

func (v *Verifier) verify(ctx context.Context, token string) (*Identity, error) {
	tok, err := jwt.ParseString(token, v.opts...)
	if err != nil {
		return nil, tokenError(err)
	}
	claims, err := tok.AsMap(ctx)
	if err != nil {
		return nil, tokenError(err)
	}
	// Times come back as time.Time from AsMap; JSONPath reads strings and
	// numbers, so give it the subject-bearing claims as they are.
	sub, err := Subject(claims, v.subPath)
	if err != nil {
		return nil, &TokenError{reason: "no_subject", err: err}
	}
	return &Identity{Subject: sub, Expiry: tok.Expiration(), Claims: claims, ClaimsJSON: payload(token)}, nil
}

// payload returns the claims of a verified compact JWS as compact JSON, or
// nil when they cannot be read that way.
func payload(token string) []byte {
	_, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil
	}
	enc, _, ok := strings.Cut(rest, ".")
	if !ok {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(enc, "="))
	if err != nil {
		return nil
	}
	var out bytes.Buffer
	if err := json.Compact(&out, raw); err != nil {
		return nil
	}
	return out.Bytes()
}
