package certfile

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pemPair makes a self-signed certificate and its key, PEM-encoded.
func pemPair(t *testing.T, serial int64) (cert, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "nocrd"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// written counts the files write made, to date each a second after the
// last: file times are as coarse as the kernel's clock tick, and two
// writes within one tick would look alike.
var written int

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	written++
	at := time.Now().Add(time.Duration(written) * time.Second)
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

// serial is the serial number of the certificate p serves.
func serial(t *testing.T, p *Pair) int64 {
	t.Helper()
	c, err := p.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Int64()
}

// TestReload: a changed pair is served from the first look after
// CheckEvery; a pair that does not load (a key that is not the
// certificate's, as halfway through a renewal) leaves the one in force.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c1, k1 := pemPair(t, 1)
	write(t, certFile, c1)
	write(t, keyFile, k1)
	p, err := Load(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	p.now = func() time.Time { return clock }
	if s := serial(t, p); s != 1 {
		t.Fatalf("serving serial %d, want 1", s)
	}

	c2, k2 := pemPair(t, 2)
	write(t, certFile, c2) // the certificate first: the key is still the old one
	clock = clock.Add(CheckEvery)
	if s := serial(t, p); s != 1 {
		t.Fatalf("with a certificate and a key that do not match, serving serial %d, want 1 still", s)
	}
	write(t, keyFile, k2)
	clock = clock.Add(CheckEvery / 2)
	if s := serial(t, p); s != 1 {
		t.Fatalf("serving serial %d before CheckEvery passed, want 1", s)
	}
	clock = clock.Add(CheckEvery / 2)
	if s := serial(t, p); s != 2 {
		t.Fatalf("once the key matched, serving serial %d, want 2", s)
	}

	// A Secret volume swaps a symlink: the paths stay, their targets change.
	link := filepath.Join(dir, "data")
	c3, k3 := pemPair(t, 3)
	next := filepath.Join(dir, "v3")
	if err := os.Mkdir(next, 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(next, "tls.crt"), c3)
	write(t, filepath.Join(next, "tls.key"), k3)
	if err := os.Symlink(next, link); err != nil {
		t.Fatal(err)
	}
	p, err = Load(filepath.Join(link, "tls.crt"), filepath.Join(link, "tls.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return clock }
	c4, k4 := pemPair(t, 4)
	v4 := filepath.Join(dir, "v4")
	if err := os.Mkdir(v4, 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(v4, "tls.crt"), c4)
	write(t, filepath.Join(v4, "tls.key"), k4)
	tmp := filepath.Join(dir, "data.tmp")
	if err := os.Symlink(v4, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(CheckEvery)
	if s := serial(t, p); s != 4 {
		t.Fatalf("after the symlink swap, serving serial %d, want 4", s)
	}
}

// TestLoadNamesTheFiles: a pair that cannot be used fails Load with an
// error naming both files.
func TestLoadNamesTheFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c1, _ := pemPair(t, 1)
	_, k2 := pemPair(t, 2)
	for _, tc := range []struct {
		name      string
		cert, key []byte
	}{
		{"mismatched", c1, k2},
		{"garbage", []byte("not a certificate"), bytes.Repeat([]byte("k"), 10)},
	} {
		write(t, certFile, tc.cert)
		write(t, keyFile, tc.key)
		_, err := Load(certFile, keyFile, nil)
		if err == nil || !strings.Contains(err.Error(), certFile) || !strings.Contains(err.Error(), keyFile) {
			t.Errorf("%s: %v, want an error naming %s and %s", tc.name, err, certFile, keyFile)
		}
	}
}
