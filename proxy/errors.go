package proxy

import (
	"net/http"
	"strconv"
)

// Error is a proxy failure and the HTTP status it is answered with, as
// {"error": <status text>, "detail": <Detail>}.
type Error struct {
	Status int
	Detail string
}

func (e *Error) Error() string { return strconv.Itoa(e.Status) + " " + e.Detail }

// body renders the JSON error body into dst.
func (e *Error) body(dst []byte) []byte {
	dst = append(dst, `{"error":`...)
	dst = strconv.AppendQuote(dst, http.StatusText(e.Status))
	dst = append(dst, `,"detail":`...)
	dst = strconv.AppendQuote(dst, e.Detail)
	return append(dst, '}')
}
