#!/usr/bin/env bash
# Makes sure the bench's peer (`curl … | aws s3 cp - s3://…`) can run: Debian's awscli at /usr/bin/aws
# (not whatever `aws` a pyenv or pip put first on PATH) and curl. On Debian as root it installs what is
# missing with apt-get and says so on stdout; elsewhere it names what to install on stderr and exits 1.
# Prints nothing when both are present.
set -euo pipefail

missing=()
[[ -x /usr/bin/aws ]] || missing+=(awscli)
command -v curl >/dev/null || missing+=(curl)
((${#missing[@]} == 0)) && exit 0

if [[ -f /etc/debian_version && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "ensure-bench-deps: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
  [[ -x /usr/bin/aws ]] && command -v curl >/dev/null && exit 0
  echo "ensure-bench-deps: still missing after apt-get install: ${missing[*]}" >&2
  exit 1
fi
echo "ensure-bench-deps: the peer needs Debian packages ${missing[*]}" \
  "(install: sudo apt-get install --no-install-recommends ${missing[*]})" >&2
exit 1
