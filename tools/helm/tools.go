//go:build tools

// Keeps helm's command package (and so its dependencies) in go.mod/go.sum.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
