// Package stream reads Kubernetes objects (a JSON or YAML stream) the way the GitOps tools hold them:
// as unstructured.Unstructured decoded by apimachinery, so whole numbers are int64 as in a live cache.
package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// Read returns every non-empty document of r, in order.
func Read(r io.Reader) ([]*unstructured.Unstructured, error) {
	decoder := yaml.NewYAMLOrJSONDecoder(r, 4096)
	var objects []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		err := decoder.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return objects, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(objects)+1, err)
		}
		if trimmed := bytes.TrimSpace(raw); len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
			continue // an empty YAML document, e.g. a leading "---"
		}
		object := &unstructured.Unstructured{}
		if err := object.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("document %d: %w", len(objects)+1, err)
		}
		objects = append(objects, object)
	}
}

// Verdict is what each command prints for each object: one JSON line.
type Verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

// Main reads stdin, judges each object, prints one JSON line per object and exits non-zero if any
// judgement failed (the line then carries "error").
func Main(judge func(*unstructured.Unstructured) (Verdict, error)) {
	objects, err := Read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading objects from stdin:", err)
		os.Exit(2)
	}
	encoder := json.NewEncoder(os.Stdout)
	failed := false
	for _, object := range objects {
		verdict, err := judge(object)
		if err != nil {
			verdict.Error = err.Error()
			failed = true
		}
		if err := encoder.Encode(verdict); err != nil {
			fmt.Fprintln(os.Stderr, "writing result:", err)
			os.Exit(2)
		}
	}
	if failed {
		os.Exit(1)
	}
}
