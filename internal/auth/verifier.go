package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// ClockSkew is how far exp and nbf may be off.
const ClockSkew = 30 * time.Second

// Identity is what a verified token says about its bearer.
type Identity struct {
	Subject string
	Expiry  time.Time
	Claims  map[string]any
}

// ErrInvalidToken is wrapped by every verification failure.
var ErrInvalidToken = errors.New("invalid token")

// Verifier checks bearer tokens against the configured key: an HMAC secret
// (HS256), a PEM public key (RS256, ES256/384/512 or EdDSA, fixed by the
// key) or a JWKS endpoint. The algorithm always comes from the key, never
// from the token, so "none" and HMAC-with-a-public-key are refused.
type Verifier struct {
	subPath string
	opts    []jwt.ParseOption
}

// NewVerifier builds the verifier for cfg. A JWKS is fetched in the
// background and kept fresh until ctx ends.
func NewVerifier(ctx context.Context, cfg Config, client *http.Client) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v := &Verifier{subPath: cfg.SubJSONPath}
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
		v.opts = append(v.opts, jwt.WithKeySet(jwk.NewCachedSet(cache, cfg.JWKSURI), jws.WithInferAlgorithmFromKey(true)))
	default:
		return nil, errors.New("no verification key: set --jwt-secret/JWT_SECRET, --jwt-public-key/JWT_PUBLIC_KEY or --jwks-uri/JWKS_URI")
	}
	v.opts = append(v.opts, jwt.WithValidate(true), jwt.WithAcceptableSkew(ClockSkew))
	if cfg.Issuer != "" {
		v.opts = append(v.opts, jwt.WithIssuer(cfg.Issuer))
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

// Verify checks a token's signature, expiry, not-before and issuer and
// reads its subject with AUTH_SUB_JSONPATH.
func (v *Verifier) Verify(ctx context.Context, token string) (*Identity, error) {
	tok, err := jwt.ParseString(token, v.opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	claims, err := tok.AsMap(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	// Times come back as time.Time from AsMap; JSONPath reads strings and
	// numbers, so give it the subject-bearing claims as they are.
	sub, err := Subject(claims, v.subPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return &Identity{Subject: sub, Expiry: tok.Expiration(), Claims: claims}, nil
}
