#!/usr/bin/env bash
# Makes sure the machine has what the tests need beyond npm: qemu-img and libvhdi (outside VHD readers) and
# the OpenStack Swift servers and the memcached their proxy caches in (the S3-compatible server the tests
# run against), and that npm installed
# the pinned Node 24. Runs as `pretest`; quiet when all is present.
# On Debian as root it installs missing packages with apt-get; elsewhere it says what to install.
#   --packages-only   skip the Node check (CI installs packages before `npm ci`)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# command -> Debian package that provides it
declare -A package_of=(
  [qemu-img]=qemu-utils
  [swift-ring-builder]=swift
  [swift-proxy-server]=swift-proxy
  [swift-account-server]=swift-account
  [swift-container-server]=swift-container
  [swift-object-server]=swift-object
  [memcached]=memcached
)

missing_packages() {
  local command packages=()
  for command in "${!package_of[@]}"; do
    command -v "$command" >/dev/null || packages+=("${package_of[$command]}")
  done
  # The Swift servers and libvhdi's module run on the system Python (/usr/bin/python3).
  [[ -x /usr/bin/python3 ]] || packages+=(python3)
  [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import pyvhdi' 2>/dev/null || packages+=(python3-libvhdi)
  ((${#packages[@]} == 0)) || printf '%s\n' "${packages[@]}" | sort -u
}

mapfile -t missing < <(missing_packages)

if ((${#missing[@]} > 0)); then
  if [[ -f /etc/debian_version && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "ensure-test-deps: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} > 0)); then
      echo "ensure-test-deps: still missing after apt-get install: ${missing[*]}" >&2
      exit 1
    fi
  else
    echo "ensure-test-deps: the tests need these Debian packages: ${missing[*]}" >&2
    echo "  install them with: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

if [[ ${1:-} == --packages-only ]]; then
  echo "ensure-test-deps: Debian packages ok"
  exit 0
fi

# npm scripts and npx run node_modules/.bin/node (the "node" devDependency), not the system node.
node_version=$(node_modules/.bin/node --version 2>/dev/null || true)
if [[ $node_version != v24.* ]]; then
  echo "ensure-test-deps: node_modules/.bin/node is '${node_version:-missing}', expected v24.x; run: npm ci" >&2
  exit 1
fi

echo "ensure-test-deps: ok (qemu-img, libvhdi, Swift, memcached, node ${node_version})"
