package proxy

import (
	"bytes"
	"net/http"

	"github.com/valyala/fasthttp"
)

// A workspace's answer names paths as the workspace sees them: without
// its route's prefix, which the proxy removed (unless KeepPrefix). The
// cookies it sets and the places it redirects to are put back under its
// route here, so that a browser stays in the workspace.

// scopeAnswer keeps the answer a workspace gave to a request on route r
// (its head in h) within r: see confineCookies and relocate. buf is
// scratch space.
func (p *Proxy) scopeAnswer(ctx *fasthttp.RequestCtx, h *fasthttp.ResponseHeader, r Route, buf *[]byte) {
	p.confineCookies(h, r, buf)
	if !p.opts.KeepPrefix {
		if s := h.StatusCode(); s >= 300 && s < 400 || s == http.StatusCreated {
			p.relocate(ctx, h, r, buf)
		}
	}
}

// relocate puts a redirect's Location (or a 201's) under the workspace's
// route when it names a path of the workspace's own: a path-absolute one
// (/login) or an absolute URL on the host the client addressed
// (http://host/login, the Host or X-Forwarded-Host the workspace got),
// outside the route. A workspace server that
// believes it is at / redirects to /login; behind nocrd that is nocrd's
// /login, not the workspace's. A Location already under the route (a
// server told its prefix), relative to the request (login), or on another
// host is left as it is.
func (p *Proxy) relocate(ctx *fasthttp.RequestCtx, h *fasthttp.ResponseHeader, r Route, buf *[]byte) {
	loc := h.Peek("Location")
	if len(loc) == 0 {
		return
	}
	var origin []byte // scheme://host of an absolute URL
	path := loc
	switch {
	case path[0] == '/':
		if len(path) > 1 && (path[1] == '/' || path[1] == '\\') {
			return // //host/x: another host
		}
	default:
		rest, ok := cutScheme(loc)
		if !ok {
			return // relative to the request, or not a URL
		}
		end := bytes.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		// The Host the workspace got, or the X-Forwarded-Host it was told
		// (a trusted proxy's).
		if host := rest[:end]; !bytes.EqualFold(host, ctx.Host()) && !bytes.EqualFold(host, p.forwardedHost(ctx)) {
			return
		}
		origin = loc[:len(loc)-len(rest)+end]
		path = rest[end:]
		if len(path) == 0 || path[0] != '/' {
			return // http://host or http://host?x: the root, left as it is
		}
	}
	p2 := path
	if i := bytes.IndexAny(p2, "?#"); i >= 0 {
		p2 = p2[:i]
	}
	prefix := p.appendForwardedPrefix((*buf)[:0], r)
	if !outsidePrefix(p2, prefix) {
		*buf = prefix
		return
	}
	// buf: the prefix, then the new Location: origin, prefix, path.
	n := len(prefix)
	out := append(append(append(prefix, origin...), prefix[:n]...), path...)
	h.SetBytesV("Location", out[n:])
	*buf = out[:0]
}

// confineCookies keeps the cookies a workspace sets (h is its answer to a
// request on route r) to that workspace's route: a Path attribute outside
// it is taken to be a path of the workspace's own, and the route is put in
// front of it (Path=/ becomes Path=/route/<id>), as nginx's
// proxy_cookie_path does. The workspace sees its paths without the route
// (unless KeepPrefix), so it scopes its cookies to them; left as they
// are, they would go to every workspace and to nocrd's own paths, and two
// workspaces of one image, open in one browser, would overwrite each
// other's session and XSRF cookies. A Path already under the route, or
// none (the browser then scopes the cookie to the request's directory,
// which is under the route), is kept. A cookie named TokenCookie is the
// proxy's, and one the workspace sets is dropped (with TokenCookie on).
// Answers without cookies cost one look at the header; buf is scratch
// space.
func (p *Proxy) confineCookies(h *fasthttp.ResponseHeader, r Route, buf *[]byte) {
	ours := p.opts.TokenCookie && p.opts.Authorizer != nil
	if p.opts.KeepPrefix && !ours {
		return
	}
	var prefix []byte // made at the first cookie: most answers have none
	change := false
	for k, v := range h.Cookies() {
		if prefix == nil {
			prefix = p.appendForwardedPrefix((*buf)[:0], r)
			*buf = prefix
		}
		if ours && string(k) == TokenCookie || !p.opts.KeepPrefix && cookiePathOutside(v, prefix) {
			change = true
			break
		}
	}
	if !change {
		return
	}
	// Rare: the values are copied out, the cookies dropped, and every one
	// added again in its order, the paths outside the route rewritten.
	var values [][]byte
	for k, v := range h.Cookies() {
		switch {
		case ours && string(k) == TokenCookie:
		case !p.opts.KeepPrefix && cookiePathOutside(v, prefix):
			values = append(values, appendConfinedCookie(nil, v, prefix))
		default:
			values = append(values, append([]byte(nil), v...))
		}
	}
	h.DelAllCookies()
	for _, v := range values {
		h.AddBytesKV(strSetCookie, v)
	}
}

// cookiePathOutside reports whether a Set-Cookie value has a Path
// attribute that is an absolute path outside prefix.
func cookiePathOutside(v, prefix []byte) bool {
	first := true
	for attr := range split(v, ';') {
		if first {
			first = false // name=value
			continue
		}
		if path, ok := cookiePath(attr); ok && outsidePrefix(path, prefix) {
			return true
		}
	}
	return false
}

// appendConfinedCookie appends the Set-Cookie value v with every Path
// outside prefix put under it.
func appendConfinedCookie(dst, v, prefix []byte) []byte {
	first := true
	for attr := range split(v, ';') {
		if !first {
			dst = append(dst, ';')
		}
		if path, ok := cookiePath(attr); ok && !first && outsidePrefix(path, prefix) {
			dst = append(append(dst, " Path="...), prefix...)
			if len(path) > 1 {
				dst = append(dst, path...)
			}
			first = false
			continue
		}
		first = false
		dst = append(dst, attr...)
	}
	return dst
}

// cookiePath returns the value of a Set-Cookie attribute when it is Path.
func cookiePath(attr []byte) ([]byte, bool) {
	attr = bytes.Trim(attr, " \t")
	k, v, ok := bytes.Cut(attr, []byte{'='})
	if !ok || !bytes.EqualFold(bytes.TrimRight(k, " \t"), []byte("path")) {
		return nil, false
	}
	return bytes.TrimLeft(v, " \t"), true
}

// outsidePrefix reports whether path is an absolute path (a browser takes
// any other as no Path at all) that is neither prefix nor under it.
func outsidePrefix(path, prefix []byte) bool {
	if len(path) == 0 || path[0] != '/' {
		return false
	}
	return !bytes.Equal(path, prefix) && !(bytes.HasPrefix(path, prefix) && path[len(prefix)] == '/')
}
