#!/usr/bin/env bash
# Makes Postgres and Redis available on loopback for `make dev` and
# `make test`, and prints the environment to use them:
#
#   eval "$(scripts/services.sh)"        # ensure both, export URLs
#   scripts/services.sh stop             # stop the project-local ones
#
# DATABASE_URL / REDIS_URL are used when set and answering. Otherwise a
# project-local Postgres cluster (initdb + pg_ctl under .local/pg) and a
# project-local redis-server (.local/redis) are started, installing Debian's
# packages first if the binaries are missing. Idempotent: safe to run twice,
# or while the services already run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL="$ROOT/.local"
PG_PORT=${HONEYDUE_PG_PORT:-55432}
REDIS_PORT=${HONEYDUE_REDIS_PORT:-56379}
DB_NAME=${HONEYDUE_DB_NAME:-honeydue}

log() { echo "services: $*" >&2; }

apt_install() {
  if ! command -v apt-get >/dev/null; then
    log "cannot install $* (no apt-get): install them and run again"; exit 1
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing $* from Debian's packages"
  $sudo apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

ensure_pg_binaries() {
  if [ -z "$(pg_bindir)" ] || ! command -v psql >/dev/null; then
    apt_install postgresql postgresql-client
  fi
}

pg_answers() {
  PGCONNECT_TIMEOUT=3 psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1
}

# Runs a command as the cluster's owner (initdb and postgres refuse root).
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Where the project-local cluster lives: .local/pg, or, when the checkout's
# path is closed to the postgres user (a clone under /root), a folder under
# /var/tmp keyed on the checkout's path.
pg_home() {
  local home="$LOCAL/pg"
  if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$home"; chmod 755 "$LOCAL" "$home"
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    if ! runuser -u postgres -- test -x "$home"; then
      home="/var/tmp/honeydue-pg-$(echo -n "$ROOT" | sha256sum | cut -c1-12)"
    fi
  fi
  echo "$home"
}

start_local_pg() {
  local bindir data run home
  bindir=$(pg_bindir)
  home=$(pg_home)
  data="$home/data"
  run="$home/run"
  mkdir -p "$home" "$run"
  [ "$(id -u)" -eq 0 ] && chown postgres "$home" "$run"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "creating a project-local Postgres cluster in $data"
    as_owner "$bindir/initdb" -D "$data" -A trust -U postgres --no-sync >/dev/null
  fi
  if ! as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "starting project-local Postgres on 127.0.0.1:$PG_PORT"
    as_owner "$bindir/pg_ctl" -D "$data" -w -t 60 -l "$home/postgres.log" \
      -o "-p $PG_PORT -k $run -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
    ln -sfn "$home/postgres.log" "$LOCAL/postgres.log" 2>/dev/null || true
  fi
}

ensure_postgres() {
  ensure_pg_binaries
  if [ -n "${DATABASE_URL:-}" ] && pg_answers "$DATABASE_URL"; then
    echo "$DATABASE_URL"; return
  fi
  [ -n "${DATABASE_URL:-}" ] && log "DATABASE_URL does not answer; using a project-local Postgres"
  local server="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  pg_answers "$server" || start_local_pg
  pg_answers "$server" || { log "Postgres did not start; see $LOCAL/postgres.log"; exit 1; }
  if [ "$(psql "$server" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
    psql "$server" -qc "CREATE DATABASE \"$DB_NAME\"" >&2
  fi
  echo "postgres://postgres@127.0.0.1:$PG_PORT/$DB_NAME"
}

redis_answers() {
  [ "$(timeout 3 redis-cli -u "$1" ping 2>/dev/null)" = "PONG" ]
}

ensure_redis() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt_install redis-server redis-tools
  fi
  if [ -n "${REDIS_URL:-}" ] && redis_answers "$REDIS_URL"; then
    echo "$REDIS_URL"; return
  fi
  [ -n "${REDIS_URL:-}" ] && log "REDIS_URL does not answer; using a project-local Redis"
  local url="redis://127.0.0.1:$REDIS_PORT/0"
  if ! redis_answers "$url"; then
    mkdir -p "$LOCAL/redis"
    log "starting project-local Redis on 127.0.0.1:$REDIS_PORT"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
      --pidfile "$LOCAL/redis/redis.pid" --dir "$LOCAL/redis" \
      --logfile "$LOCAL/redis/redis.log" --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do redis_answers "$url" && break; sleep 0.1; done
    redis_answers "$url" || { log "Redis did not start; see $LOCAL/redis/redis.log"; exit 1; }
  fi
  echo "$url"
}

stop_local() {
  local bindir home; bindir=$(pg_bindir); home=$(pg_home)
  if [ -n "$bindir" ] && [ -f "$home/data/PG_VERSION" ]; then
    as_owner "$bindir/pg_ctl" -D "$home/data" -m fast stop >/dev/null 2>&1 && log "stopped local Postgres" || true
  fi
  if [ -f "$LOCAL/redis/redis.pid" ]; then
    kill "$(cat "$LOCAL/redis/redis.pid")" 2>/dev/null && log "stopped local Redis" || true
  fi
}

case "${1:-env}" in
  env)
    db=$(ensure_postgres)
    redis=$(ensure_redis)
    mkdir -p "$LOCAL"
    printf 'DATABASE_URL=%s\nREDIS_URL=%s\n' "$db" "$redis" > "$LOCAL/services.env"
    printf 'export DATABASE_URL=%q\nexport REDIS_URL=%q\n' "$db" "$redis"
    ;;
  stop) stop_local ;;
  *) echo "usage: $0 [env|stop]" >&2; exit 2 ;;
esac
