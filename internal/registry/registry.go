// Package registry lists images in a container registry through the Docker
// Registry HTTP API v2 (/v2/_catalog and /v2/<name>/tags/list), following
// its Link-header pagination.
package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Client queries one registry.
type Client struct {
	base *url.URL
	http *http.Client
	// PageSize is the n parameter of paginated requests.
	PageSize int
}

// New returns a client for the registry at rawURL (e.g. http://localhost:5001).
func New(rawURL string) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(rawURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("registry url must be http(s)://host[:port], got %q", rawURL)
	}
	return &Client{base: u, http: &http.Client{Timeout: 20 * time.Second}, PageSize: 100}, nil
}

// Host is the registry's host[:port], the prefix of its image references.
func (c *Client) Host() string { return c.base.Host }

// maxPages bounds pagination so a misbehaving registry cannot loop forever.
const maxPages = 1000

// Images returns host/repository:tag for every tag of every repository whose
// name starts with prefix.
func (c *Client) Images(ctx context.Context, prefix string) ([]string, error) {
	var repos []string
	err := c.paginate(ctx, "/v2/_catalog", func(body []byte) error {
		var page struct {
			Repositories []string `json:"repositories"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return fmt.Errorf("decode catalog: %w", err)
		}
		for _, r := range page.Repositories {
			if strings.HasPrefix(r, prefix) {
				repos = append(repos, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	images := []string{}
	for _, repo := range repos {
		err := c.paginate(ctx, "/v2/"+repo+"/tags/list", func(body []byte) error {
			var page struct {
				Tags []string `json:"tags"`
			}
			if err := json.Unmarshal(body, &page); err != nil {
				return fmt.Errorf("decode tags of %s: %w", repo, err)
			}
			for _, t := range page.Tags {
				images = append(images, c.base.Host+"/"+repo+":"+t)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return images, nil
}

var linkNext = regexp.MustCompile(`<([^>]+)>\s*;\s*rel="?next"?`)

func (c *Client) paginate(ctx context.Context, path string, page func([]byte) error) error {
	next := c.base.ResolveReference(&url.URL{Path: path, RawQuery: fmt.Sprintf("n=%d", c.PageSize)})
	for i := 0; next != nil; i++ {
		if i == maxPages {
			return fmt.Errorf("registry %s: more than %d pages for %s", c.base.Host, maxPages, path)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next.String(), nil)
		if err != nil {
			return err
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return fmt.Errorf("registry %s: %w", c.base.Host, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("registry %s: read %s: %w", c.base.Host, path, err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("registry %s: GET %s: %s: %s", c.base.Host, path, resp.Status, strings.TrimSpace(string(body)))
		}
		if err := page(body); err != nil {
			return err
		}
		next = nil
		if m := linkNext.FindStringSubmatch(resp.Header.Get("Link")); m != nil {
			u, err := url.Parse(m[1])
			if err != nil {
				return fmt.Errorf("registry %s: bad Link header %q", c.base.Host, resp.Header.Get("Link"))
			}
			next = c.base.ResolveReference(u)
		}
	}
	return nil
}
