package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

func sign(t testing.TB, alg jwa.SignatureAlgorithm, key any, claims map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for k, v := range claims {
		if err := tok.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	var opts []jwt.SignOption
	if k, ok := key.(jwk.Key); ok {
		opts = append(opts, jwt.WithKey(alg, k))
	} else {
		opts = append(opts, jwt.WithKey(alg, key))
	}
	b, err := jwt.Sign(tok, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func pemPublic(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// unsigned makes an "alg: none" token.
func unsigned(claims map[string]any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	return enc.EncodeToString(h) + "." + enc.EncodeToString(p) + "."
}

func TestVerifier(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	now := time.Now()
	good := map[string]any{"sub": "alice", "exp": now.Add(time.Hour), "iss": "https://issuer.example"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for a, b := range good {
			m[a] = b
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecPEM := pemPublic(t, &ecKey.PublicKey)

	// A JWKS endpoint on loopback serving the EC key's public half.
	jwkKey, err := jwk.FromRaw(ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = jwkKey.Set(jwk.KeyIDKey, "k1")
	set := jwk.NewSet()
	_ = set.AddKey(jwkKey)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(set)
	}))
	defer jwks.Close()
	signingJWK, _ := jwk.FromRaw(ecKey)
	_ = signingJWK.Set(jwk.KeyIDKey, "k1")

	verifiers := map[string]Config{
		"hmac": {SubJSONPath: "$.sub", JWTSecret: "s3cret", Issuer: "https://issuer.example"},
		"ec":   {SubJSONPath: "$.sub", JWTPublicKey: ecPEM},
		"rsa":  {SubJSONPath: "$.sub", JWTPublicKey: pemPublic(t, &rsaKey.PublicKey)},
		"ed":   {SubJSONPath: "$.sub", JWTPublicKey: pemPublic(t, edKey.Public())},
		"jwks": {SubJSONPath: "$.sub", JWKSURI: jwks.URL},
		"path": {SubJSONPath: "$.user.id", JWTSecret: "s3cret"},
	}
	cases := []struct {
		name, verifier, token, wantSub string
	}{
		{"hmac ok", "hmac", sign(t, jwa.HS256, []byte("s3cret"), good), "alice"},
		{"hmac wrong secret", "hmac", sign(t, jwa.HS256, []byte("guess"), good), ""},
		{"hmac wrong issuer", "hmac", sign(t, jwa.HS256, []byte("s3cret"), with("iss", "https://evil.example")), ""},
		{"hmac no issuer", "hmac", sign(t, jwa.HS256, []byte("s3cret"), with("iss", nil)), ""},
		{"expired", "hmac", sign(t, jwa.HS256, []byte("s3cret"), with("exp", now.Add(-time.Hour))), ""},
		{"expired within skew", "hmac", sign(t, jwa.HS256, []byte("s3cret"), with("exp", now.Add(-10*time.Second))), "alice"},
		{"not yet valid", "hmac", sign(t, jwa.HS256, []byte("s3cret"), with("nbf", now.Add(time.Hour))), ""},
		{"no subject", "hmac", sign(t, jwa.HS256, []byte("s3cret"), with("sub", nil)), ""},
		{"alg none", "hmac", unsigned(good), ""},
		{"alg none against a public key", "ec", unsigned(good), ""},
		{"garbage", "hmac", "not.a.token", ""},
		{"empty", "hmac", "", ""},
		{"ec ok", "ec", sign(t, jwa.ES256, ecKey, good), "alice"},
		{"ec signed by another key", "ec", sign(t, jwa.ES256, mustEC(t), good), ""},
		{"hmac keyed with the public key", "ec", sign(t, jwa.HS256, []byte(ecPEM), good), ""},
		{"rsa ok", "rsa", sign(t, jwa.RS256, rsaKey, good), "alice"},
		{"rsa token on ec verifier", "ec", sign(t, jwa.RS256, rsaKey, good), ""},
		{"ed25519 ok", "ed", sign(t, jwa.EdDSA, edKey, good), "alice"},
		{"jwks ok", "jwks", sign(t, jwa.ES256, signingJWK, good), "alice"},
		{"jwks other key", "jwks", sign(t, jwa.ES256, mustEC(t), good), ""},
		{"jwks hmac confusion", "jwks", sign(t, jwa.HS256, []byte(ecPEM), good), ""},
		{"nested subject", "path", sign(t, jwa.HS256, []byte("s3cret"), with("user", map[string]any{"id": "u-7"})), "u-7"},
	}
	built := map[string]*Verifier{}
	for name, cfg := range verifiers {
		v, err := NewVerifier(ctx, cfg, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		built[name] = v
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := built[c.verifier].Verify(ctx, c.token)
			if c.wantSub == "" {
				if err == nil || !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("accepted (%+v, %v)", id, err)
				}
				return
			}
			if err != nil || id.Subject != c.wantSub || id.Expiry.IsZero() {
				t.Fatalf("Verify = %+v, %v; want subject %q", id, err, c.wantSub)
			}
		})
	}
}

func mustEC(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewVerifierErrors(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{SubJSONPath: "$.sub"}, "no verification key"},
		{Config{SubJSONPath: "$.sub", JWTPublicKey: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}, "JWT_PUBLIC_KEY"},
		{Config{SubJSONPath: "sub", JWTSecret: "x"}, "AUTH_SUB_JSONPATH"},
	} {
		if _, err := NewVerifier(ctx, c.cfg, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewVerifier(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
}

// TestClaimsJSON: Authorize hands the proxy the claims the issuer signed,
// compacted onto one line whatever whitespace the issuer used.
func TestClaimsJSON(t *testing.T) {
	v, err := NewVerifier(context.Background(), Config{SubJSONPath: "$.sub", JWTSecret: "s3cret"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	payload := fmt.Sprintf("{\n  \"sub\": \"alice\",\r\n  \"roles\": [ \"viewer\" ],\n  \"exp\": %d\n}", exp)
	signed, err := jws.Sign([]byte(payload), jws.WithKey(jwa.HS256, []byte("s3cret")))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // verified, then from the cache
		sub, claims, err := v.Authorize(context.Background(), string(signed))
		want := fmt.Sprintf(`{"sub":"alice","roles":["viewer"],"exp":%d}`, exp)
		if err != nil || sub != "alice" || string(claims) != want {
			t.Fatalf("Authorize = %q, %s, %v; want alice, %s", sub, claims, err, want)
		}
	}
	if _, claims, err := v.Authorize(context.Background(), unsigned(map[string]any{"sub": "alice"})); err == nil || claims != nil {
		t.Errorf("alg none: claims %s, err %v", claims, err)
	}
}
