package auth

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Subject reads the user identity from token claims with a JSONPath of the
// forms $.a, $.a.b, $['a']['b'] and $.a[0]. The value must be a non-empty
// string without control characters, or a number, which is formatted. A
// subject goes into headers (the proxy's subject header), annotations and
// logs: a CR or LF in it would write headers of the caller's choosing.
func Subject(claims map[string]any, path string) (string, error) {
	steps, err := parsePath(path)
	if err != nil {
		return "", err
	}
	var v any = claims
	for _, st := range steps {
		switch cur := v.(type) {
		case map[string]any:
			if st.index >= 0 {
				return "", fmt.Errorf("AUTH_SUB_JSONPATH %s: [%d] applied to an object", path, st.index)
			}
			var ok bool
			if v, ok = cur[st.key]; !ok {
				return "", fmt.Errorf("claims have no %s", path)
			}
		case []any:
			if st.index < 0 || st.index >= len(cur) {
				return "", fmt.Errorf("claims have no %s", path)
			}
			v = cur[st.index]
		default:
			return "", fmt.Errorf("claims have no %s", path)
		}
	}
	switch s := v.(type) {
	case string:
		if s == "" {
			return "", fmt.Errorf("claim %s is empty", path)
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c == 0x7f {
				return "", fmt.Errorf("claim %s contains a control character (%#x)", path, c)
			}
		}
		return s, nil
	case float64:
		return strconv.FormatFloat(s, 'f', -1, 64), nil
	default:
		return "", fmt.Errorf("claim %s is not a string", path)
	}
}

type step struct {
	key   string
	index int // -1 for a key step
}

var errPath = errors.New("must look like $.sub, $.user.id or $['claim']")

func parsePath(path string) ([]step, error) {
	rest, ok := strings.CutPrefix(path, "$")
	if !ok {
		return nil, fmt.Errorf("AUTH_SUB_JSONPATH %q: %w", path, errPath)
	}
	var steps []step
	for rest != "" {
		switch {
		case strings.HasPrefix(rest, "."):
			rest = rest[1:]
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			if end == 0 {
				return nil, fmt.Errorf("AUTH_SUB_JSONPATH %q: %w", path, errPath)
			}
			steps = append(steps, step{key: rest[:end], index: -1})
			rest = rest[end:]
		case strings.HasPrefix(rest, "['"):
			end := strings.Index(rest, "']")
			if end < 2 {
				return nil, fmt.Errorf("AUTH_SUB_JSONPATH %q: %w", path, errPath)
			}
			steps = append(steps, step{key: rest[2:end], index: -1})
			rest = rest[end+2:]
		case strings.HasPrefix(rest, "["):
			end := strings.Index(rest, "]")
			n, err := strconv.Atoi(rest[1:max(end, 1)])
			if end < 0 || err != nil || n < 0 {
				return nil, fmt.Errorf("AUTH_SUB_JSONPATH %q: %w", path, errPath)
			}
			steps = append(steps, step{index: n})
			rest = rest[end+1:]
		default:
			return nil, fmt.Errorf("AUTH_SUB_JSONPATH %q: %w", path, errPath)
		}
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("AUTH_SUB_JSONPATH %q: %w", path, errPath)
	}
	return steps, nil
}
