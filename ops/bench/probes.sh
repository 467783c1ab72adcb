#!/usr/bin/env bash
# Fresh-connection probe throughput: consentry's prober beside prometheus-blackbox-exporter,
# both against the same local nginx, reported by `consentry bench probes` (docs/benchmarks.md).
#
# Starts its own nginx and blackbox_exporter on 127.0.0.1 (free ports, config in a temp
# dir), builds and runs the benchmark, and stops both on exit. Nothing leaves 127.0.0.0/8.
# The prober, nginx and blackbox_exporter share the machine's cores: the benchmark runs
# its phases one after another, and the figures are only worth keeping from an idle machine.
#
# Usage: ops/bench/probes.sh [--wide-ports] [--seconds N] [--concurrency N]
#   Other arguments go to `consentry bench probes` (defaults: 10 s per phase, 256 in flight).
#   --wide-ports (root only): run in a private network namespace, whose loopback is its
#   own, with ip_local_port_range 1024-65535. With the default range (32768-60999) the
#   kernel caps new connections from one client to one ip:port at about 14,100/s when the
#   client closes first (TCP probes): connect() takes only half the range's ports and
#   reuses a TIME_WAIT port only after tcp_tw_reuse_delay (1 s). See docs/benchmarks.md.
# Environment:
#   CONSENTRY_BIN  a consentry binary to use instead of building target/release/consentry.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
blackbox_bin=/usr/bin/prometheus-blackbox-exporter
# Bounds: waiting for a server to listen, and the free-port search.
ready_tries_max=100
port_tries_max=200
# Descriptors: one per probe in flight, twice over for blackbox_exporter's proxying.
nofile_wanted=65536

wide_ports=false
if [[ ${1:-} == --wide-ports ]]; then
    wide_ports=true
    shift
    if [[ $(id -u) != 0 ]]; then
        echo "probes.sh: --wide-ports needs root (a network namespace and its sysctls)" >&2
        exit 2
    fi
fi

nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
if [[ ! -x $nginx_bin || ! -x $blackbox_bin ]]; then
    if [[ $(id -u) == 0 ]]; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx prometheus-blackbox-exporter
        nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
    else
        echo "probes.sh: needs nginx and prometheus-blackbox-exporter;" \
            "run as root to install them, or: sudo apt-get install nginx prometheus-blackbox-exporter" >&2
        exit 2
    fi
fi

hard=$(ulimit -Hn)
if [[ $hard != unlimited && $hard -lt $nofile_wanted && $(id -u) == 0 ]]; then
    ulimit -Hn "$nofile_wanted" 2>/dev/null || true
    hard=$(ulimit -Hn)
fi
if [[ $hard == unlimited || $hard -ge $nofile_wanted ]]; then
    ulimit -n "$nofile_wanted"
else
    ulimit -n "$hard"
fi

if [[ -n ${CONSENTRY_BIN:-} ]]; then
    consentry=$CONSENTRY_BIN
else
    (cd "$root" && cargo build --release --bin consentry)
    consentry=${CARGO_TARGET_DIR:-$root/target}/release/consentry
fi

if $wide_ports && [[ -z ${CONSENTRY_BENCH_NETNS:-} ]]; then
    # Built already: the namespace has no network but its own loopback.
    exec unshare --net env CONSENTRY_BENCH_NETNS=1 CONSENTRY_BIN="$consentry" \
        bash "$0" --wide-ports "$@"
fi
if [[ -n ${CONSENTRY_BENCH_NETNS:-} ]]; then
    ip link set lo up
    sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
fi

dir=$(mktemp -d /tmp/consentry-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nobody listens on, below the default ephemeral range. connect() never
# takes a port a listener has bound, so the probes' source ports cannot collide with it.
free_port() {
    local port tries=0
    while ((tries++ < port_tries_max)); do
        port=$((10000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "probes.sh: no free loopback port found" >&2
    return 1
}

wait_listening() {
    local what=$1 port=$2 pid=$3 tries=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null || ((tries++ >= ready_tries_max)); then
            echo "probes.sh: $what did not start listening on 127.0.0.1:$port" >&2
            cat "$dir"/*.log >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.1
    done
}

# Share of all cores busy over one second, from /proc/stat.
cpu_busy_pct() {
    local _ user nice system idle iowait irq softirq steal total1 idle1
    read -r _ user nice system idle iowait irq softirq steal _ </proc/stat
    total1=$((user + nice + system + idle + iowait + irq + softirq + steal))
    idle1=$((idle + iowait))
    sleep 1
    read -r _ user nice system idle iowait irq softirq steal _ </proc/stat
    local total=$((user + nice + system + idle + iowait + irq + softirq + steal - total1))
    local idle_delta=$((idle + iowait - idle1))
    echo $((total > 0 ? 100 * (total - idle_delta) / total : 0))
}

# nginx serves one small static page; nginx's workers run as nobody when started as root.
nginx_port=$(free_port)
mkdir -p "$dir/www" "$dir/tmp"
printf 'consentry benchmark target\n' >"$dir/www/index.html"
chmod -R a+rX "$dir"
cat >"$dir/nginx.conf" <<CONF
worker_processes auto;
worker_rlimit_nofile $nofile_wanted;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx.log warn;
events {
    worker_connections 16384;
    multi_accept on;
}
http {
    access_log off;
    sendfile on;
    tcp_nodelay on;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$nginx_port reuseport backlog=4096;
        root $dir/www;
        location / { }
    }
}
CONF
"$nginx_bin" -e "$dir/nginx.log" -p "$dir" -c "$dir/nginx.conf" &
pids+=($!)
wait_listening nginx "$nginx_port" "${pids[-1]}"

# blackbox_exporter with modules equivalent to the benchmark's checks: IPv4, 5 s timeout,
# no redirects followed. Its HTTP prober opens a fresh connection for every probe.
blackbox_port=$(free_port)
cat >"$dir/blackbox.yml" <<CONF
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      follow_redirects: false
  tcp_connect:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
CONF
"$blackbox_bin" --config.file="$dir/blackbox.yml" \
    --web.listen-address="127.0.0.1:$blackbox_port" --log.level=warn 2>"$dir/blackbox.log" &
pids+=($!)
blackbox_pid=${pids[-1]}
wait_listening blackbox_exporter "$blackbox_port" "$blackbox_pid"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
echo "ip_local_port_range: $(tr '\t' ' ' </proc/sys/net/ipv4/ip_local_port_range)$($wide_ports && echo ' (private network namespace, --wide-ports)'), tcp_tw_reuse $(cat /proc/sys/net/ipv4/tcp_tw_reuse)"
echo "CPU already in use before the run: $(cpu_busy_pct)% over 1 s (figures from a busy machine are not comparable)"
echo "nginx $("$nginx_bin" -v 2>&1 | cut -d/ -f2), $("$blackbox_bin" --version 2>&1 | head -1)"
echo

status=0
"$consentry" bench probes \
    --http-url "http://127.0.0.1:$nginx_port/index.html" \
    --tcp "127.0.0.1:$nginx_port" \
    --blackbox "http://127.0.0.1:$blackbox_port" \
    --blackbox-pid "$blackbox_pid" \
    "$@" || status=$?
exit "$status"
