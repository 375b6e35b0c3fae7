package mcp

import (
	"context"
	"errors"
	"strings"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nocrd/nocrd/internal/registry"
)

// ListRegistryImagesInput is list_registry_images' input.
type ListRegistryImagesInput struct {
	Repository string `json:"repository,omitempty" jsonschema:"repository name prefix to filter by"`
}

// ListRegistryImagesOutput is list_registry_images' output.
type ListRegistryImagesOutput struct {
	Images   []string `json:"images" jsonschema:"image references host/repository:tag"`
	Registry string   `json:"registry" jsonschema:"the registry's host[:port]"`
}

func (s *Server) registryTools() []toolSpec {
	ann := readOnly("List registry images")
	ann.OpenWorldHint = ptr(true) // it talks to a registry outside the cluster
	return []toolSpec{
		newTool(&mcpsdk.Tool{
			Name:        "list_registry_images",
			Description: "Lists the images (repository:tag) in the registry configured by REGISTRY_URL, through the Docker Registry HTTP API v2.",
			Annotations: ann,
		}, nil, func(ctx context.Context, _ *mcpsdk.CallToolRequest, in ListRegistryImagesInput) (*mcpsdk.CallToolResult, ListRegistryImagesOutput, error) {
			if s.cfg.RegistryURL == "" {
				return nil, ListRegistryImagesOutput{}, errors.New("no registry configured: set REGISTRY_URL (e.g. http://localhost:5001)")
			}
			c, err := registry.New(s.cfg.RegistryURL)
			if err != nil {
				return nil, ListRegistryImagesOutput{}, err
			}
			images, err := c.Images(ctx, in.Repository)
			if err != nil {
				return nil, ListRegistryImagesOutput{}, err
			}
			out := ListRegistryImagesOutput{Images: images, Registry: c.Host()}
			if len(images) == 0 {
				return text("No images found in %s", c.Host()), out, nil
			}
			return text("%s", strings.Join(images, "\n")), out, nil
		}),
	}
}
