//go:build wasip1

// inject-identity is a route policy that passes the verified caller on to
// the workspace: it sets a request header (X-Workspace-User, or the name in
// its configuration) to the subject nocrd verified, replacing whatever the
// client sent under that name.
package main

import (
	"strings"

	"github.com/nocrd/nocrd/wasm-policies/guest"
)

func init() {
	name := strings.TrimSpace(string(guest.Config()))
	if name == "" {
		name = "X-Workspace-User"
	}
	guest.Handle(func() bool {
		sub, ok := guest.HeaderBytes("X-Nocrd-Subject")
		if !ok {
			guest.Deny(403, "no verified subject")
			return false
		}
		guest.SetHeaderBytes(name, sub)
		return true
	})
}

func main() {}
