#!/usr/bin/env bash
# Build helm (the v4 release pinned in go.mod) into the user cache and print its path.
#
#   tools/helm/build.sh            # build if missing, print the binary's path
#
# Cached beside the control-plane binaries, outside the repository, so `make clean` keeps it:
# ${XDG_CACHE_HOME:-~/.cache}/batchcert/helm/<version>/helm. Same shape as tools/promtool/build.sh:
# a lock so two test runs build once, a .partial file so a killed build is never taken for a
# binary. A cold build takes several minutes on 2 cores; the log is next to the binary.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=$(cd "$here" && GOWORK=off go list -m -f '{{.Version}}' helm.sh/helm/v4)
[[ -n $version ]] || { echo "no helm version in $here/go.mod" >&2; exit 1; }
dir="${XDG_CACHE_HOME:-$HOME/.cache}/batchcert/helm/$version"
binary="$dir/helm"
if [[ ! -x $binary ]]; then
  mkdir -p "$dir"
  exec 9>"$dir/.build.lock"
  flock 9  # another test run building the same version: wait for it
  if [[ ! -x $binary ]]; then
    echo "building helm $version into $dir (log: $dir/build.log)" >&2
    # -X stamps the version `helm version` prints (and the chart's kubeVersion checks read).
    if ! (cd "$here" && GOWORK=off CGO_ENABLED=0 go build -trimpath -buildvcs=false \
          -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
          -o "$binary.partial" helm.sh/helm/v4/cmd/helm) >"$dir/build.log" 2>&1; then
      tail -20 "$dir/build.log" >&2
      exit 1
    fi
    mv "$binary.partial" "$binary"
  fi
fi
echo "$binary"
