package proxy

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/valyala/fasthttp"
)

// Error is a proxy failure and the HTTP status it is answered with, as
// {"error": <status text>, "detail": <Detail>}.
type Error struct {
	Status int
	Detail string

	once sync.Once
	body []byte
}

func (e *Error) Error() string { return strconv.Itoa(e.Status) + " " + e.Detail }

// Answer sets ctx's response to e: its status and its JSON body.
func (e *Error) Answer(ctx *fasthttp.RequestCtx) {
	ctx.Response.SetStatusCode(e.Status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.SetBodyRaw(e.json())
}

// json returns the JSON error body, rendered once: errors are usually
// shared values, so answering one costs no allocation.
func (e *Error) json() []byte {
	e.once.Do(func() {
		dst := append([]byte(nil), `{"error":`...)
		dst = strconv.AppendQuote(dst, http.StatusText(e.Status))
		dst = append(dst, `,"detail":`...)
		dst = strconv.AppendQuote(dst, e.Detail)
		e.body = append(dst, '}')
	})
	return e.body
}

// The proxy's own answers.
var (
	errMissingToken   = &Error{Status: http.StatusUnauthorized, Detail: "a bearer token is required (Authorization header or token query parameter)"}
	errInvalidToken   = &Error{Status: http.StatusUnauthorized, Detail: "invalid token"}
	errForbidden      = &Error{Status: http.StatusForbidden, Detail: "the workspace belongs to another user"}
	errResolve        = &Error{Status: http.StatusBadGateway, Detail: "cannot resolve the workspace"}
	errTimeout        = &Error{Status: http.StatusGatewayTimeout, Detail: "the workspace did not answer in time"}
	errUnreachable    = &Error{Status: http.StatusBadGateway, Detail: "the workspace cannot be reached"}
	errAnswerNotHTTP  = &Error{Status: http.StatusBadGateway, Detail: "the workspace did not answer in HTTP/1.x (an HTTP/2-only server, or a broken response head)"}
	errAnswerTooLarge = &Error{Status: http.StatusBadGateway, Detail: "the workspace's response head is larger than " + strconv.Itoa(upstreamReadBuffer>>10) + " KiB"}
	errUpgradeBody    = &Error{Status: http.StatusBadRequest, Detail: "a WebSocket handshake has no body"}
	errUpgradeAnswer  = &Error{Status: http.StatusBadGateway, Detail: "the workspace switched to a protocol other than WebSocket"}
	errBodyTimeout    = &Error{Status: http.StatusRequestTimeout, Detail: "the client stopped sending the request body"}
	errBodyRead       = &Error{Status: http.StatusBadRequest, Detail: "the request body could not be read"}
	errPolicyFailed   = &Error{Status: http.StatusForbidden, Detail: "a route policy failed to decide; the request is denied"}
	// errClientClosed is counted, not seen: its client has gone. 499 is
	// nginx's status for a client that closed the connection.
	errClientClosed = &Error{Status: 499, Detail: "the client closed the connection"}
)
