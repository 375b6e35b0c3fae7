// Package certfile serves a TLS certificate and key from files and keeps
// them current: when either file changes (cert-manager renewing a
// Secret, an operator replacing them), the next TLS handshake after a
// check picks the new pair up, without a restart. A pair that does not
// load (a renewal half written) leaves the one in force until the files
// change again.
package certfile

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// CheckEvery is the least time between two looks at the files.
const CheckEvery = time.Second

// Pair is a certificate and key kept from their files.
type Pair struct {
	certFile, keyFile string
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]

	mu        sync.Mutex // one check at a time
	checked   atomic.Int64
	certStamp stamp
	keyStamp  stamp
	now       func() time.Time
}

// stamp is a file's metadata as last seen: a file written in place has a
// new modification time (or size), one put in its place (Kubernetes
// swaps a symlink to update a Secret volume, and os.Stat follows it) is
// another file.
type stamp struct{ fi os.FileInfo }

func stampOf(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{fi}
}

func (s stamp) same(o stamp) bool {
	if s.fi == nil || o.fi == nil {
		return s.fi == o.fi
	}
	return os.SameFile(s.fi, o.fi) && s.fi.Size() == o.fi.Size() && s.fi.ModTime().Equal(o.fi.ModTime())
}

// Load reads the pair; it fails, naming the files, when they do not hold
// a matching certificate and key.
func Load(certFile, keyFile string, log *slog.Logger) (*Pair, error) {
	if log == nil {
		log = slog.Default()
	}
	p := &Pair{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	p.certStamp, p.keyStamp = stampOf(certFile), stampOf(keyFile)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	p.cert.Store(&cert)
	p.checked.Store(p.now().UnixNano())
	return p, nil
}

// GetCertificate is tls.Config's: the pair in force, read again first
// when the files have changed since the last look (at most every
// CheckEvery).
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if now := p.now().UnixNano(); now-p.checked.Load() >= int64(CheckEvery) {
		p.check(now)
	}
	return p.cert.Load(), nil
}

func (p *Pair) check(now int64) {
	if !p.mu.TryLock() {
		return // another handshake is looking
	}
	defer p.mu.Unlock()
	p.checked.Store(now)
	cs, ks := stampOf(p.certFile), stampOf(p.keyFile)
	if cs.same(p.certStamp) && ks.same(p.keyStamp) {
		return
	}
	p.certStamp, p.keyStamp = cs, ks
	cert, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		p.log.Error("TLS certificate changed but cannot be used; the one in force stays",
			"cert", p.certFile, "key", p.keyFile, "err", err)
		return
	}
	p.cert.Store(&cert)
	p.log.Info("TLS certificate reloaded", "cert", p.certFile)
}
