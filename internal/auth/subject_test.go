package auth

import (
	"strings"
	"testing"
)

func TestSubject(t *testing.T) {
	claims := map[string]any{
		"sub":    "alice",
		"num":    42.0,
		"empty":  "",
		"user":   map[string]any{"id": "u-1", "emails": []any{"a@x", "b@x"}},
		"weird.": map[string]any{"k": "dotted"},
		"obj":    map[string]any{},
		"crlf":   "alice\r\nX-Admin: true",
		"nul":    "alice\x00",
		"tab":    "al\tice",
		"del":    "alice\x7f",
		"utf8":   "élise 用户",
	}
	cases := []struct{ path, want, wantErr string }{
		{"$.sub", "alice", ""},
		{"$.utf8", "élise 用户", ""},
		{"$.crlf", "", "control character"},
		{"$.nul", "", "control character"},
		{"$.tab", "", "control character"},
		{"$.del", "", "control character"},
		{"$['sub']", "alice", ""},
		{"$.user.id", "u-1", ""},
		{"$['user']['id']", "u-1", ""},
		{"$.user.emails[1]", "b@x", ""},
		{"$['weird.'].k", "dotted", ""},
		{"$.num", "42", ""},
		{"$.missing", "", "claims have no $.missing"},
		{"$.user.emails[5]", "", "claims have no"},
		{"$.sub.deeper", "", "claims have no"},
		{"$.empty", "", "is empty"},
		{"$.obj", "", "is not a string"},
		{"$.user[0]", "", "applied to an object"},
		{"sub", "", "must look like"},
		{"$", "", "must look like"},
		{"$.", "", "must look like"},
		{"$[x]", "", "must look like"},
		{"$['unterminated", "", "must look like"},
	}
	for _, c := range cases {
		got, err := Subject(claims, c.path)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("Subject(%q) = %q, %v; want error %q", c.path, got, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Subject(%q) = %q, %v; want %q", c.path, got, err, c.want)
		}
	}
}

// FuzzSubject: any path, any claims shape: an error or a non-empty string,
// never a panic.
func FuzzSubject(f *testing.F) {
	for _, s := range []string{"$.sub", "$['a']['b']", "$.a[0]", "$[", "$['", "$.a[-1]", "$..a"} {
		f.Add(s)
	}
	claims := map[string]any{"sub": "x", "a": []any{map[string]any{"b": "y"}}}
	f.Fuzz(func(t *testing.T, path string) {
		got, err := Subject(claims, path)
		if err == nil && got == "" {
			t.Fatalf("Subject(%q) returned an empty subject without error", path)
		}
	})
}
