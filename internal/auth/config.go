// Package auth is nocrd's one notion of identity, shared by the MCP
// endpoint and the edge proxy: how bearer tokens are verified (HMAC
// secret, PEM public key or JWKS, with verified tokens cached), where the
// subject is read from, and the OAuth protected-resource metadata
// (RFC 9728) that tells clients how to get a token.
package auth

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
)

// Config configures authentication.
type Config struct {
	Enabled bool `env:"AUTH_ENABLED" envDefault:"false"`
	// SubJSONPath locates the subject in the token's claims.
	SubJSONPath string `env:"AUTH_SUB_JSONPATH" envDefault:"$.sub"`
	JWTSecret   string `env:"JWT_SECRET"`
	// JWTPublicKey is a PEM-encoded RSA, ECDSA or Ed25519 public key.
	JWTPublicKey string `env:"JWT_PUBLIC_KEY"`
	JWKSURI      string `env:"JWKS_URI"`
	Issuer       string `env:"AUTH_ISSUER"`
	// Audience, when set, must be among the token's aud values.
	Audience string `env:"AUTH_AUDIENCE"`
	// Scopes are advertised as scopes_supported in the RFC 9728 metadata.
	Scopes string `env:"AUTH_SCOPES"`
}

// Validate reports the first invalid field, naming its flag and variable.
func (c Config) Validate() error {
	if _, err := parsePath(c.SubJSONPath); err != nil {
		return fmt.Errorf("AUTH_SUB_JSONPATH: must be a JSONPath such as $.sub, got %q", c.SubJSONPath)
	}
	if c.JWTPublicKey != "" {
		if err := checkPublicKey(c.JWTPublicKey); err != nil {
			return fmt.Errorf("--jwt-public-key/JWT_PUBLIC_KEY: %w", err)
		}
	}
	if c.JWKSURI != "" {
		if err := checkURL(c.JWKSURI); err != nil {
			return fmt.Errorf("--jwks-uri/JWKS_URI: %w", err)
		}
	}
	if c.Issuer != "" {
		if err := checkURL(c.Issuer); err != nil {
			return fmt.Errorf("--auth-issuer/AUTH_ISSUER: %w", err)
		}
	}
	if c.Enabled && c.JWTSecret == "" && c.JWTPublicKey == "" && c.JWKSURI == "" {
		return errors.New("AUTH_ENABLED: needs a verification key: set --jwt-secret/JWT_SECRET, --jwt-public-key/JWT_PUBLIC_KEY or --jwks-uri/JWKS_URI")
	}
	return nil
}

func checkPublicKey(s string) error {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return errors.New("not PEM: expected -----BEGIN PUBLIC KEY-----")
	}
	if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		if _, err2 := x509.ParsePKCS1PublicKey(block.Bytes); err2 != nil {
			return fmt.Errorf("not a public key: %w", err)
		}
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("must be an http or https URL, got %q", s)
	}
	return nil
}
