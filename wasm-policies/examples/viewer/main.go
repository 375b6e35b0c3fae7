//go:build wasip1

// viewer is a route policy that makes workspaces read-only for viewers: a
// caller whose verified token has the role "viewer" may only GET, HEAD and
// OPTIONS; anything else is answered 403 and never reaches the workspace.
// The role is read from the claims nocrd shows in X-Nocrd-Claims, from the
// claim "roles" (a string or a list of strings) or "role" unless
// POLICY_CONFIG_VIEWER names another claim, a JSON object:
//
//	{"claim": "groups", "role": "readers"}
//
// A request without verified claims (AUTH_ENABLED off) is let through: the
// policy restricts viewers, it does not authenticate.
package main

import (
	"encoding/json"
	"strings"

	"github.com/nocrd/nocrd/wasm-policies/guest"
)

type config struct {
	Claim string `json:"claim"`
	Role  string `json:"role"`
}

func init() {
	cfg := config{Role: "viewer"}
	if raw := guest.Config(); len(raw) > 0 {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			guest.Log(guest.LevelError, "viewer: bad configuration: "+err.Error())
		}
	}
	claims := []string{"roles", "role"}
	if cfg.Claim != "" {
		claims = []string{cfg.Claim}
	}
	guest.Handle(func() bool {
		switch guest.Method() {
		case "GET", "HEAD", "OPTIONS":
			return true
		}
		raw, ok := guest.HeaderBytes("X-Nocrd-Claims")
		if !ok {
			return true
		}
		var all map[string]json.RawMessage
		if err := json.Unmarshal(raw, &all); err != nil {
			guest.Deny(403, "viewer: the token's claims are not a JSON object")
			return false
		}
		for _, c := range claims {
			if hasRole(all[c], cfg.Role) {
				guest.Deny(403, "viewer: the role "+cfg.Role+" may only read (GET, HEAD, OPTIONS); "+guest.Method()+" refused")
				return false
			}
		}
		return true
	})
}

// hasRole reports whether a claim, a string or a list of strings (or a
// space-separated string, as OAuth scopes are), holds role.
func hasRole(claim json.RawMessage, role string) bool {
	if len(claim) == 0 {
		return false
	}
	var one string
	if json.Unmarshal(claim, &one) == nil {
		for _, r := range strings.Fields(one) {
			if r == role {
				return true
			}
		}
		return false
	}
	var list []string
	if json.Unmarshal(claim, &list) == nil {
		for _, r := range list {
			if r == role {
				return true
			}
		}
	}
	return false
}

func main() {}
