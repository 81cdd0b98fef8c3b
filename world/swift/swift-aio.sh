#!/usr/bin/env bash
# OpenStack Swift all-in-one on loopback with the S3 API (s3api + tempauth), for tests.
#
#   swift-aio.sh start               start it unless it is already healthy; print the S3 endpoint on stdout.
#                                    It then runs until `stop`.
#   swift-aio.sh start --lease PID   the same for a test run (process PID): if this call had to start
#                                    Swift, the last run to `release` stops it again
#   swift-aio.sh release PID         end that lease; stops Swift if a lease started it and no live lease is left
#   swift-aio.sh stop                stop the servers this state folder started
#   swift-aio.sh status              print the endpoint and exit 0 when healthy, else exit 1
#
# Leases exist because several test runs (or developers' shells) may share one Swift: a run must not
# stop a Swift that another run is still using, nor one somebody started by hand.
#
# S3 credentials: access key "test:tester", secret "testing", region us-east-1, path-style.
# Environment:
#   VDI_VAULT_SWIFT_DIR           state folder (configs, rings, data, logs, pids);
#                                 default ${TMPDIR:-/tmp}/vdi-vault-swift
#   VDI_VAULT_SWIFT_PORT          proxy (S3 endpoint) port on 127.0.0.1; default 18080
#   VDI_VAULT_SWIFT_BACKEND_PORT  first of three backend ports (object, container, account); default 16200
#   VDI_VAULT_SWIFT_PROXY_WORKERS proxy worker processes; default 2
#   VDI_VAULT_SWIFT_MEMCACHE_PORT the memcached this script starts beside the servers; default backend port + 3
# Only stdout carries the endpoint; progress and errors go to stderr. Needs no stdin or terminal.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state=${VDI_VAULT_SWIFT_DIR:-${TMPDIR:-/tmp}/vdi-vault-swift}
proxy_port=${VDI_VAULT_SWIFT_PORT:-18080}
backend_port=${VDI_VAULT_SWIFT_BACKEND_PORT:-16200}
object_port=$backend_port
container_port=$((backend_port + 1))
account_port=$((backend_port + 2))
proxy_workers=${VDI_VAULT_SWIFT_PROXY_WORKERS:-2}
memcache_port=${VDI_VAULT_SWIFT_MEMCACHE_PORT:-$((backend_port + 3))}
endpoint=http://127.0.0.1:$proxy_port
access_key=test:tester
secret_key=testing
# The Debian Swift packages run on the system Python; a pyenv or venv python3 on PATH lacks them.
python=/usr/bin/python3
servers=(account container object proxy)
# Every process we start and stop: the servers and the proxy's cache.
processes=(memcache "${servers[@]}")

say() { echo "swift-aio: $*" >&2; }
die() {
  say "$*"
  exit 1
}

probe() { "$python" "$here/s3-probe.py" "$endpoint" "$access_key" "$secret_key" "$@"; }
# Without its memcached the proxy still answers, but looks up the account and container on the backend
# servers for every request (about twice as slow): a Swift without it is restarted.
healthy() { live_pid memcache >/dev/null && probe health 2>/dev/null && probe list-buckets 2>/dev/null; }

pid_file() { echo "$state/run/$1.pid"; }

# The pid from our pid file, if that process is still one of our Swift servers (pids get reused).
live_pid() {
  local file pid
  file=$(pid_file "$1")
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  local marker="$state/etc/$1-server.conf"
  [[ $1 == memcache ]] && marker="-p $memcache_port"
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$marker" || return 1
  echo "$pid"
}

lock() {
  mkdir -p "$state"
  exec 9>"$state/lock"
  # Two test runs starting at once must not both build rings and bind ports.
  flock -w 300 9 || die "timed out waiting for the lock on $state"
}

require_tools() {
  local missing=()
  for tool in swift-proxy-server swift-account-server swift-container-server swift-object-server \
    swift-ring-builder memcached flock setsid; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [[ -x $python ]] || missing+=("$python")
  ((${#missing[@]} == 0)) ||
    die "missing ${missing[*]}; run: bash scripts/ensure-test-deps.sh (installs the Debian Swift and memcached packages)"
}

port_free() {
  "$python" -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

render() {
  sed -e "s|@SWIFT_DIR@|$state/etc|g" -e "s|@DEVICES_DIR@|$state/srv|g" -e "s|@USER@|$(id -un)|g" \
    -e "s|@PROXY_PORT@|$proxy_port|g" -e "s|@PROXY_WORKERS@|$proxy_workers|g" \
    -e "s|@OBJECT_PORT@|$object_port|g" -e "s|@CONTAINER_PORT@|$container_port|g" \
    -e "s|@ACCOUNT_PORT@|$account_port|g" -e "s|@MEMCACHE_PORT@|$memcache_port|g" \
    "$here/conf/$1" >"$state/etc/$1"
}

# One ring per server kind, each with a single device on loopback. Rebuilt only when ports change.
build_rings() {
  local stamp="$object_port $container_port $account_port" kind port
  if [[ -f $state/etc/ring-ports && $(<"$state/etc/ring-ports") == "$stamp" ]] &&
    [[ -f $state/etc/object.ring.gz && -f $state/etc/container.ring.gz && -f $state/etc/account.ring.gz ]]; then
    return
  fi
  say "building rings"
  for kind in object container account; do
    port=${kind}_port
    rm -f "$state/etc/$kind.builder" "$state/etc/$kind.ring.gz"
    (
      cd "$state/etc"
      swift-ring-builder "$kind.builder" create 10 1 1
      swift-ring-builder "$kind.builder" add "r1z1-127.0.0.1:${!port}/d1" 1
      # Exit status 1 is a warning (e.g. balance); the ring file is what matters.
      swift-ring-builder "$kind.builder" rebalance || (($? == 1))
    ) >>"$state/log/rings.log" 2>&1 || die "swift-ring-builder failed for $kind; see $state/log/rings.log"
    [[ -f $state/etc/$kind.ring.gz ]] || die "no $kind ring written; see $state/log/rings.log"
  done
  echo "$stamp" >"$state/etc/ring-ports"
}

launch() {
  local name=$1
  if [[ $name == memcache ]]; then
    # 64 MiB, loopback only, no UDP; -u: memcached refuses to run as root without naming a user.
    setsid bash -c 'echo $$ >"$1"; exec "${@:2}"' _ "$(pid_file memcache)" \
      memcached -l 127.0.0.1 -p "$memcache_port" -U 0 -m 64 -u "$(id -un)" \
      </dev/null >>"$state/log/memcache.log" 2>&1 9>&- &
    return
  fi
  # setsid: each server leads its own process group (so stop can end its workers too) and is
  # detached from the caller's terminal and signals. fd 9 (our lock) is closed so servers don't hold it.
  # -v logs to the console, redirected to a file: there may be no syslog socket.
  setsid bash -c 'echo $$ >"$1"; exec "${@:2}"' _ "$(pid_file "$name")" \
    "swift-$name-server" "$state/etc/$name-server.conf" -v \
    </dev/null >>"$state/log/$name.log" 2>&1 9>&- &
}

log_tails() {
  local name
  for name in "${processes[@]}"; do
    [[ -s $state/log/$name.log ]] || continue
    echo "----- $state/log/$name.log (last 20 lines)" >&2
    tail -n 20 "$state/log/$name.log" >&2
  done
}

stop_servers() {
  local name pid pids=()
  for name in "${processes[@]}"; do
    if pid=$(live_pid "$name"); then
      # The server leads its own process group (setsid); signal the group to reach its workers.
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$(pid_file "$name")"
  done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}

# Leases: one file per test-run pid. run/auto-stop marks a Swift that a lease started.
take_lease() {
  if [[ -n $1 ]]; then
    mkdir -p "$state/leases"
    touch "$state/leases/$1"
  else
    rm -f "$state/run/auto-stop" # started or claimed by hand: only `stop` ends it
  fi
}

live_leases() {
  local file
  for file in "$state"/leases/*; do
    [[ -e $file ]] || continue
    # A run that died without releasing leaves a lease whose process is gone.
    if [[ -d /proc/${file##*/} ]]; then echo "${file##*/}"; else rm -f "$file"; fi
  done
}

start() {
  local lease=
  if [[ ${1:-} == --lease ]]; then
    [[ ${2:-} =~ ^[0-9]+$ ]] || die "usage: $0 start --lease PID"
    lease=$2
  fi
  require_tools
  lock
  if healthy; then
    take_lease "$lease"
    say "already running at $endpoint"
    echo "$endpoint"
    return
  fi
  stop_servers # leftovers of an unhealthy earlier start
  local port
  for port in "$proxy_port" "$object_port" "$container_port" "$account_port" "$memcache_port"; do
    port_free "$port" || die "127.0.0.1:$port is in use by another program;" \
      "choose other ports with VDI_VAULT_SWIFT_PORT / VDI_VAULT_SWIFT_BACKEND_PORT / VDI_VAULT_SWIFT_MEMCACHE_PORT"
  done

  say "starting in $state"
  mkdir -p "$state/etc" "$state/srv/d1" "$state/run" "$state/log"
  local name
  for name in swift.conf proxy-server.conf account-server.conf container-server.conf object-server.conf; do
    render "$name"
  done
  build_rings
  for name in "${processes[@]}"; do
    echo "===== $(date -u +%FT%TZ) start" >>"$state/log/$name.log"
    launch "$name"
  done

  local deadline=$((SECONDS + 60))
  until healthy; do
    for name in "${processes[@]}"; do
      if ! live_pid "$name" >/dev/null; then
        sleep 0.5 # the pid file may not be written yet
        live_pid "$name" >/dev/null || {
          say "$name exited"
          log_tails
          stop_servers
          exit 1
        }
      fi
    done
    if ((SECONDS > deadline)); then
      say "not healthy after 60 s"
      probe health || true
      probe list-buckets || true
      log_tails
      stop_servers
      exit 1
    fi
    sleep 0.25
  done
  # Catches what a listing can't: e.g. a disk without xattrs, where Swift can't store objects.
  if ! probe round-trip; then
    log_tails
    stop_servers
    die "S3 round trip failed"
  fi
  if [[ -n $lease ]]; then touch "$state/run/auto-stop"; fi
  take_lease "$lease"
  say "ready at $endpoint (logs in $state/log)"
  echo "$endpoint"
}

release() {
  [[ ${1:-} =~ ^[0-9]+$ ]] || die "usage: $0 release PID"
  lock
  rm -f "$state/leases/$1"
  if [[ -n $(live_leases) ]]; then
    say "still in use by $(live_leases | tr '\n' ' ')"
  elif [[ -f $state/run/auto-stop ]]; then
    stop_servers
    rm -f "$state/run/auto-stop"
    say "stopped (last lease released)"
  fi
}

stop() {
  lock
  stop_servers
  rm -rf "$state/leases" "$state/run/auto-stop"
  say "stopped"
}

status() {
  if healthy; then
    echo "$endpoint"
  else
    say "not running at $endpoint"
    return 1
  fi
}

case ${1:-} in
  start) start "${@:2}" ;;
  release) release "${@:2}" ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start [--lease PID] | release PID | stop | status" ;;
esac
