package proxy

import "testing"

// TestFinalAnswer: what a stalled body write takes for the workspace's
// answer: anything but interim responses, once enough has come to tell.
func TestFinalAnswer(t *testing.T) {
	for _, tc := range []struct {
		b    string
		want bool
	}{
		{"", false},
		{"HTTP/1.1 4", true}, // a final status begins
		{"HTTP/1.1 413 Payload Too Large\r\n", true},
		{"HTTP/1.1 1", false},
		{"HTTP/1.1 100 Continue\r\n", false},
		{"HTTP/1.1 100 Continue\r\n\r\n", false},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 4", true},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200", true},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early", false},
		{"HTTP/1.0 200 OK", true},
		{"garbage!!!", true},
		{"PRI * HTTP/2.0\r\n", true},
	} {
		if got := finalAnswer([]byte(tc.b)); got != tc.want {
			t.Errorf("finalAnswer(%q) = %v, want %v", tc.b, got, tc.want)
		}
	}
}
