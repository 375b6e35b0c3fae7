//go:build wasip1

// registry-allowlist is an admission policy: every container and init
// container image must come from one of the allowed registries (image name
// prefixes), configured with POLICY_CONFIG_REGISTRY_ALLOWLIST as a
// comma-separated list (default "registry.internal/").
package main

import (
	"encoding/json"
	"strings"

	"github.com/nocrd/nocrd/wasm-policies/guest"
)

type container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

type review struct {
	Pod struct {
		Spec struct {
			Containers     []container `json:"containers"`
			InitContainers []container `json:"initContainers"`
		} `json:"spec"`
	} `json:"pod"`
}

func init() {
	allowed := []string{"registry.internal/"}
	if raw := strings.TrimSpace(string(guest.Config())); raw != "" {
		allowed = nil
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				allowed = append(allowed, p)
			}
		}
	}
	guest.Handle(func() bool {
		var r review
		if err := json.Unmarshal(guest.Body(), &r); err != nil {
			guest.Deny(400, "registry-allowlist: the admission review is not JSON")
			return false
		}
		for _, c := range append(r.Pod.Spec.InitContainers, r.Pod.Spec.Containers...) {
			ok := false
			for _, p := range allowed {
				if strings.HasPrefix(c.Image, p) {
					ok = true
					break
				}
			}
			if !ok {
				guest.Deny(403, "registry-allowlist: image "+c.Image+" of container "+c.Name+" is not from an allowed registry ("+strings.Join(allowed, ", ")+")")
				return false
			}
		}
		return true
	})
}

func main() {}
