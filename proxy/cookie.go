package proxy

import (
	"bytes"
	"iter"
	"net/http"

	"github.com/valyala/fasthttp"
)

// TokenCookie is the cookie in which a browser keeps its token for one
// workspace (Options.TokenCookie): set by the proxy's redirect of a
// navigation that carried the token in the query, sent back by the browser
// on every request under that workspace's route, and never forwarded.
const TokenCookie = "nocrd_token"

// maxCookieToken is the longest token put in a cookie. Browsers keep a
// cookie of up to 4096 bytes, name and attributes included; a longer
// token would be dropped, and the page behind the redirect refused.
const maxCookieToken = 3800

// cookiePairs iterates over the name=value pairs of a Cookie header value,
// trimmed of the spaces and tabs around them, skipping empty ones.
func cookiePairs(v []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for pair := range split(v, ';') {
			if pair = bytes.Trim(pair, " \t"); len(pair) > 0 && !yield(pair) {
				return
			}
		}
	}
}

// cookieNamed returns the value of pair, a cookie's name=value, when its
// name is name (cookie names are case-sensitive), without the spaces
// around it or the double quotes RFC 6265 allows around a value.
func cookieNamed(pair []byte, name string) ([]byte, bool) {
	k, v, ok := bytes.Cut(pair, []byte{'='})
	if !ok || string(bytes.TrimRight(k, " \t")) != name {
		return nil, false
	}
	v = bytes.TrimLeft(v, " \t")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	return v, true
}

// cookieValue returns the value of the first cookie named name in the
// Cookie header values, or nil.
func cookieValue(values [][]byte, name string) []byte {
	for _, v := range values {
		if val, ok := findCookie(v, name); ok {
			return val
		}
	}
	return nil
}

// hasCookie reports whether the Cookie header value v holds a cookie named
// name.
func hasCookie(v []byte, name string) bool {
	_, ok := findCookie(v, name)
	return ok
}

// findCookie returns the value of the first cookie named name in the
// Cookie header value v, and whether there is one.
func findCookie(v []byte, name string) ([]byte, bool) {
	if !bytes.Contains(v, s2b(name)) {
		return nil, false
	}
	for pair := range cookiePairs(v) {
		if val, ok := cookieNamed(pair, name); ok {
			return val, true
		}
	}
	return nil, false
}

// appendCookieField appends the Cookie field k: v without the cookies
// named name: the field as it is when it has none, nothing when it had no
// other. The cookies left are joined by "; ", as browsers send them.
func appendCookieField(dst, k, v []byte, name string) []byte {
	if !hasCookie(v, name) {
		return appendField(dst, k, v)
	}
	start := len(dst)
	dst = append(append(dst, k...), ": "...)
	first := len(dst)
	for pair := range cookiePairs(v) {
		if _, ok := cookieNamed(pair, name); ok {
			continue
		}
		if len(dst) > first {
			dst = append(dst, "; "...)
		}
		dst = append(dst, pair...)
	}
	if len(dst) == first {
		return dst[:start]
	}
	return append(dst, "\r\n"...)
}

// cookieSafe reports whether a token can be a cookie's value as it is:
// the bytes RFC 6265 allows in one (a JWT's base64url and dots are), and
// short enough for a browser to keep.
func cookieSafe(token []byte) bool {
	if len(token) == 0 || len(token) > maxCookieToken {
		return false
	}
	for _, c := range token {
		if c <= ' ' || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}

// isNavigation reports whether a request is a browser's top-level
// navigation (Fetch metadata: Sec-Fetch-Dest: document), made with GET.
// A frame's navigation is not one: a cookie set there is a third party's,
// which browsers may not keep.
func isNavigation(h *fasthttp.RequestHeader) bool {
	return h.IsGet() && string(h.Peek("Sec-Fetch-Dest")) == "document"
}

// signIn answers a browser's navigation that carried its token in the
// query: a 303 to the same address without the token, which goes into the
// TokenCookie cookie instead. The address bar no longer shows the token
// (where the workspace's own scripts could read it, as location.search),
// and every later request of the page (its scripts, styles, fetches and
// WebSockets) carries it.
func (p *Proxy) signIn(ctx *fasthttp.RequestCtx, r Route, token []byte) {
	uri := OriginForm(ctx.Request.Header.RequestURI())
	if i := bytes.IndexAny(uri, "?#"); i >= 0 {
		uri = uri[:i]
	}
	loc := append([]byte(nil), uri...)
	if len(loc) == len(p.base)+len(RoutePrefix)+len(r.ID) {
		// /route/<id> alone: the workspace's root is /route/<id>/, against
		// which its page's relative links resolve.
		loc = append(loc, '/')
	}
	loc = appendQueryWithoutToken(loc, r.Query)
	ctx.Response.Header.Set("Location", b2s(loc))
	ctx.Response.Header.Set("Cache-Control", "no-store")
	p.setTokenCookie(ctx, r, token)
	ctx.SetStatusCode(http.StatusSeeOther)
	p.m.request(outcomeSignIn, http.StatusSeeOther)
}

// setTokenCookie sets the TokenCookie cookie of r's workspace to token, or
// clears it when token is nil. It lives as long as the browser session;
// once the token expires, the 401 that follows clears it. SameSite=Lax
// lets a link from another site open the workspace (a Strict cookie set
// behind such a link is not sent on the redirect that follows it) and
// keeps it off other sites' POSTs, frames and fetches.
func (p *Proxy) setTokenCookie(ctx *fasthttp.RequestCtx, r Route, token []byte) {
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(TokenCookie)
	c.SetValueBytes(token)
	c.SetPathBytes(p.appendForwardedPrefix(nil, r))
	c.SetHTTPOnly(true)
	c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	c.SetSecure(string(clientProto(ctx)) == "https")
	if token == nil {
		c.SetMaxAge(-1) // Max-Age=0: gone at once
	}
	ctx.Response.Header.SetCookie(c)
}
