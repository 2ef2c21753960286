#!/usr/bin/env bash
# Build promtool (the Prometheus release pinned in go.mod) into the user cache and print its path.
#
#   tools/promtool/build.sh            # build if missing, print the binary's path
#
# Cached beside the control-plane binaries, outside the repository, so `make clean` keeps it:
# ${XDG_CACHE_HOME:-~/.cache}/batchcert/promtool/<version>/promtool. Built with
# -tags remove_all_sd (no service-discovery plugins: promtool checks and tests rule files and
# lints metrics here; it never reads a scrape config), which halves the build. A cold build takes
# a few minutes on 2 cores; the log is next to the binary.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=$(cd "$here" && GOWORK=off go list -m -f '{{.Version}}' github.com/prometheus/prometheus)
[[ -n $version ]] || { echo "no Prometheus version in $here/go.mod" >&2; exit 1; }
dir="${XDG_CACHE_HOME:-$HOME/.cache}/batchcert/promtool/$version"
binary="$dir/promtool"
if [[ ! -x $binary ]]; then
  mkdir -p "$dir"
  exec 9>"$dir/.build.lock"
  flock 9  # another test run building the same version: wait for it
  if [[ ! -x $binary ]]; then
    echo "building promtool $version into $dir (log: $dir/build.log)" >&2
    if ! (cd "$here" && GOWORK=off CGO_ENABLED=0 go build -trimpath -buildvcs=false \
          -tags remove_all_sd -o "$binary.partial" github.com/prometheus/prometheus/cmd/promtool) \
          >"$dir/build.log" 2>&1; then
      tail -20 "$dir/build.log" >&2
      exit 1
    fi
    mv "$binary.partial" "$binary"
  fi
fi
echo "$binary"
