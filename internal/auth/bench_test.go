package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

// BenchmarkVerify measures a token check on the proxy's hot path: a token
// seen before costs a cache lookup; "uncached" is jwx's full verification.
func BenchmarkVerify(b *testing.B) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	claims := map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	cases := []struct {
		name  string
		cfg   Config
		token string
	}{
		{"HS256", Config{Enabled: true, SubJSONPath: "$.sub", JWTSecret: "s3cret"}, sign(b, jwa.HS256, []byte("s3cret"), claims)},
		{"ES256", Config{Enabled: true, SubJSONPath: "$.sub", JWTPublicKey: pemPublic(b, &ec.PublicKey)}, sign(b, jwa.ES256, ec, claims)},
	}
	for _, c := range cases {
		v, err := NewVerifier(context.Background(), c.cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.Run(c.name+"/cached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, c.token); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/uncached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.verify(ctx, c.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
