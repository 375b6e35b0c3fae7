//go:build wasip1

// quota is an admission policy: an owner may have at most N live
// workspaces (default 3), and each workspace gets CPU and memory limits no
// larger than a cap (default 2 CPUs and 4Gi), which it adds to containers
// that set none. Configure it with POLICY_CONFIG_QUOTA, a JSON object:
//
//	{"maxWorkspaces": 3, "cpu": "2", "memory": "4Gi"}
package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/nocrd/nocrd/wasm-policies/guest"
)

type config struct {
	MaxWorkspaces int    `json:"maxWorkspaces"`
	CPU           string `json:"cpu"`
	Memory        string `json:"memory"`
}

// review is the part of the admission review this policy reads.
type review struct {
	Operation string `json:"operation"`
	Pod       struct {
		Spec struct {
			Containers []struct {
				Name      string `json:"name"`
				Resources struct {
					Limits map[string]string `json:"limits"`
				} `json:"resources"`
			} `json:"containers"`
		} `json:"spec"`
	} `json:"pod"`
	Workspaces struct {
		Count int `json:"count"`
	} `json:"workspaces"`
}

func init() {
	cfg := config{MaxWorkspaces: 3, CPU: "2", Memory: "4Gi"}
	if raw := guest.Config(); len(raw) > 0 {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			guest.Log(guest.LevelError, "quota: bad configuration: "+err.Error())
		}
	}
	capCPU, okCPU := milliCPU(cfg.CPU)
	capMem, okMem := bytesOf(cfg.Memory)
	guest.Handle(func() bool {
		var r review
		if err := json.Unmarshal(guest.Body(), &r); err != nil {
			guest.Deny(400, "quota: the admission review is not JSON")
			return false
		}
		if r.Operation == "spawn_workspace" && r.Workspaces.Count >= cfg.MaxWorkspaces {
			guest.Deny(403, fmt.Sprintf("quota: at most %d workspaces per owner; you have %d", cfg.MaxWorkspaces, r.Workspaces.Count))
			return false
		}
		var patch []map[string]any
		for i, c := range r.Pod.Spec.Containers {
			lim := c.Resources.Limits
			if v, ok := lim["cpu"]; ok {
				if m, ok := milliCPU(v); !ok || okCPU && m > capCPU {
					guest.Deny(403, fmt.Sprintf("quota: container %s asks for %s CPU; the cap is %s", c.Name, v, cfg.CPU))
					return false
				}
			}
			if v, ok := lim["memory"]; ok {
				if b, ok := bytesOf(v); !ok || okMem && b > capMem {
					guest.Deny(403, fmt.Sprintf("quota: container %s asks for %s memory; the cap is %s", c.Name, v, cfg.Memory))
					return false
				}
			}
			// Containers without limits get the cap.
			base := fmt.Sprintf("/spec/containers/%d/resources", i)
			if lim == nil {
				patch = append(patch, map[string]any{"op": "add", "path": base + "/limits", "value": map[string]string{}})
			}
			if _, ok := lim["cpu"]; !ok {
				patch = append(patch, map[string]any{"op": "add", "path": base + "/limits/cpu", "value": cfg.CPU})
			}
			if _, ok := lim["memory"]; !ok {
				patch = append(patch, map[string]any{"op": "add", "path": base + "/limits/memory", "value": cfg.Memory})
			}
		}
		if len(patch) == 0 {
			return true
		}
		b, _ := json.Marshal(patch)
		guest.Patch(b)
		return false
	})
}

// milliCPU parses a CPU quantity ("2", "500m", "1.5").
func milliCPU(s string) (int64, bool) {
	if m, ok := strings.CutSuffix(s, "m"); ok {
		n, err := strconv.ParseInt(m, 10, 64)
		return n, err == nil
	}
	f, err := strconv.ParseFloat(s, 64)
	return int64(f * 1000), err == nil
}

// bytesOf parses a memory quantity ("4Gi", "512Mi", "1G", "1000").
func bytesOf(s string) (int64, bool) {
	units := []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v * u.mult, err == nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

func main() {}
