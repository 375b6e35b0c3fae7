package certfile

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nocrd/nocrd/internal/testcert"
)

// pemPair makes a self-signed certificate and its key, PEM-encoded.
func pemPair(t *testing.T, serial int64) (cert, key []byte) {
	p := testcert.New(t, serial)
	return p.CertPEM, p.KeyPEM
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

// version writes a pair with the given serial into a directory of its
// own under dir, as the kubelet writes each version of a Secret, and
// returns that directory.
func version(t *testing.T, dir string, serial int64) string {
	t.Helper()
	v := filepath.Join(dir, "v"+strconv.FormatInt(serial, 10))
	if err := os.Mkdir(v, 0o700); err != nil {
		t.Fatal(err)
	}
	c, k := pemPair(t, serial)
	write(t, filepath.Join(v, "tls.crt"), c)
	write(t, filepath.Join(v, "tls.key"), k)
	return v
}

// point makes link point at target, replacing it in one rename.
func point(t *testing.T, link, target string) {
	t.Helper()
	tmp := link + ".tmp"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
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
	point(t, link, version(t, dir, 3))
	p, err = Load(filepath.Join(link, "tls.crt"), filepath.Join(link, "tls.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return clock }
	point(t, link, version(t, dir, 4))
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
