package proxy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nocrd/nocrd/proxy"
)

// TestSubjectHeaderNames: the verified subject may go in a header of its
// own, never in one that carries credentials, frames or routes the
// message, describes the connection, or is the proxy's.
func TestSubjectHeaderNames(t *testing.T) {
	base := proxy.Config{DefaultWorkspacePort: 3000, RouteCacheSize: 1, UpstreamTimeout: 1}
	for name, ok := range map[string]bool{
		"X-Forwarded-User": true, "X-Workspace-User": true, "Remote-User": true, "X_User": true,
		"Authorization": false, "authorization": false, "Host": false, "Content-Length": false, "content_length": false,
		"Transfer-Encoding": false, "Connection": false, "Upgrade": false, "Te": false,
		"X-Forwarded-For": false, "X_Forwarded_Host": false, "X-Forwarded-Proto": false, "X-Forwarded-Prefix": false,
		"X-Nocrd-User": false, "x_nocrd_subject": false, "X User": false, "X-User:": false, "X(User)": false, "X-Üser": false,
	} {
		c := base
		c.SubjectHeader = name
		err := c.Validate()
		if (err == nil) != ok {
			t.Errorf("%q: %v, want accepted=%v", name, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--proxy-subject-header/PROXY_SUBJECT_HEADER") {
			t.Errorf("%q: the error does not name the setting: %v", name, err)
		}
	}
}

func TestTrustedProxies(t *testing.T) {
	base := proxy.Config{DefaultWorkspacePort: 3000, RouteCacheSize: 1, UpstreamTimeout: 1}
	for in, want := range map[string]string{
		"":                                   "[]",
		"10.0.0.0/8":                         "[10.0.0.0/8]",
		" 10.1.2.3/8 , 192.168.1.7,fd00::/8": "[10.0.0.0/8 192.168.1.7/32 fd00::/8]",
		"::ffff:10.0.0.1":                    "[10.0.0.1/32]",
		"2001:db8::1":                        "[2001:db8::1/128]",
	} {
		c := base
		c.TrustedProxies = in
		got, err := c.TrustedPrefixes()
		if err != nil || c.Validate() != nil || fmt.Sprint(got) != want {
			t.Errorf("%q: %v %v, want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"10.0.0.0/33", "ingress", "10.0.0.1/x", "1.2.3"} {
		c := base
		c.TrustedProxies = in
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--proxy-trusted-proxies/PROXY_TRUSTED_PROXIES") || !strings.Contains(err.Error(), in) {
			t.Errorf("%q: %v", in, err)
		}
	}
}
