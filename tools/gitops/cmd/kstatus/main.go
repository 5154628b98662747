// Command kstatus prints, for each object read from stdin (JSON or YAML stream), the status that
// sigs.k8s.io/cli-utils/pkg/kstatus computes for it: the library Flux (kustomize-controller `wait`,
// `healthChecks`; helm-controller with Helm 4) and `kubectl wait`-style tooling use to judge health.
//
// Output: one JSON line per object, {"status": "Current|InProgress|Failed|Terminating|...", "message": ...}.
package main

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/dynatrace-apitoken-operator/tools/gitops/cmd/internal/stream"
)

func main() {
	stream.Main(func(object *unstructured.Unstructured) (stream.Verdict, error) {
		result, err := status.Compute(object)
		if err != nil {
			return stream.Verdict{Status: string(status.UnknownStatus)}, err
		}
		return stream.Verdict{Status: string(result.Status), Message: result.Message}, nil
	})
}
