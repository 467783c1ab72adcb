#!/usr/bin/env bash
# Fresh-connection probe throughput: consentry's prober beside prometheus-blackbox-exporter,
# both against the same local nginx, reported by `consentry bench probes` (docs/benchmarks.md).
#
# Starts its own nginx (on one free port of 127.0.0.1 ... 127.0.0.N, N destinations) and
# blackbox_exporter on 127.0.0.1 (config in a temp dir), builds and runs the benchmark,
# and stops both on exit. Both probers get the same N destinations and take them in turn.
# Nothing leaves 127.0.0.0/8. The prober, nginx and blackbox_exporter share the machine's
# cores: the benchmark runs its phases one after another, and the figures are only worth
# keeping from an idle machine.
#
# Usage: ops/bench/probes.sh [--wide-ports] [--targets N] [--seconds N] [--concurrency N]
#   Other arguments go to `consentry bench probes` (defaults: 10 s per phase, 256 in flight).
#   --targets N (1-64, default 8): destinations, 127.0.0.1 ... 127.0.0.N on one port. A
#   production prober spreads its probes over many targets; with one destination a client
#   that closes first (TCP probes) gets at most about 14,100 new connections/s to it with
#   the default port range: connect() takes only half the range's ports and reuses a
#   TIME_WAIT port to the same ip:port only after tcp_tw_reuse_delay (1 s). Each further
#   destination address is a further 4-tuple space, so N destinations lift that N-fold.
#   --targets 1 measures the single-destination ceiling. See docs/benchmarks.md.
#   --wide-ports (root only): run in a private network namespace, whose loopback is its
#   own, with ip_local_port_range 1024-65535 (twice the ports per destination).
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

# Most destinations: the bench's own bound per probe kind.
targets_max=64

wide_ports=false
targets=8
bench_args=()
while (($#)); do
    case $1 in
    --wide-ports)
        wide_ports=true
        shift
        ;;
    --targets)
        if (($# < 2)); then
            echo "probes.sh: --targets needs a number" >&2
            exit 2
        fi
        targets=$2
        shift 2
        ;;
    --targets=*)
        targets=${1#--targets=}
        shift
        ;;
    *)
        bench_args+=("$1")
        shift
        ;;
    esac
done
if [[ ! $targets =~ ^[0-9]+$ ]] || ((targets < 1 || targets > targets_max)); then
    echo "probes.sh: --targets takes a number from 1 to $targets_max, got '$targets'" >&2
    exit 2
fi
if $wide_ports && [[ $(id -u) != 0 ]]; then
    echo "probes.sh: --wide-ports needs root (a network namespace and its sysctls)" >&2
    exit 2
fi
# The destinations' addresses: all of 127.0.0.0/8 is local on Linux, nothing to configure.
addrs=()
for ((i = 1; i <= targets; i++)); do
    addrs+=("127.0.0.$i")
done

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
        bash "$0" --wide-ports --targets "$targets" ${bench_args[@]+"${bench_args[@]}"}
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

# A port nobody listens on at any of the given loopback addresses, below the default
# ephemeral range. connect() never takes a port a listener has bound, so the probes'
# source ports cannot collide with it.
free_port() {
    local port addr tries=0
    while ((tries++ < port_tries_max)); do
        port=$((10000 + RANDOM % 20000))
        for addr in "$@"; do
            if (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null; then
                continue 2
            fi
        done
        echo "$port"
        return 0
    done
    echo "probes.sh: no free loopback port found" >&2
    return 1
}

# Waits until `port` accepts connections on every address given after it.
wait_listening() {
    local what=$1 pid=$2 port=$3 addr tries=0
    shift 3
    for addr in "$@"; do
        until (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null; do
            if ! kill -0 "$pid" 2>/dev/null || ((tries++ >= ready_tries_max)); then
                echo "probes.sh: $what did not start listening on $addr:$port" >&2
                cat "$dir"/*.log >&2 2>/dev/null || true
                exit 1
            fi
            sleep 0.1
        done
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

# nginx serves one small static page on each destination address, all on one port;
# nginx's workers run as nobody when started as root.
nginx_port=$(free_port "${addrs[@]}")
listens=""
for addr in "${addrs[@]}"; do
    listens+="        listen $addr:$nginx_port reuseport backlog=4096;"$'\n'
done
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
$listens        root $dir/www;
        location / { }
    }
}
CONF
"$nginx_bin" -e "$dir/nginx.log" -p "$dir" -c "$dir/nginx.conf" &
pids+=($!)
wait_listening nginx "${pids[-1]}" "$nginx_port" "${addrs[@]}"

# blackbox_exporter with modules equivalent to the benchmark's checks: IPv4, 5 s timeout,
# no redirects followed. Its HTTP prober opens a fresh connection for every probe.
blackbox_port=$(free_port 127.0.0.1)
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
wait_listening blackbox_exporter "$blackbox_pid" "$blackbox_port" 127.0.0.1

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
echo "ip_local_port_range: $(tr '\t' ' ' </proc/sys/net/ipv4/ip_local_port_range)$($wide_ports && echo ' (private network namespace, --wide-ports)'), tcp_tw_reuse $(cat /proc/sys/net/ipv4/tcp_tw_reuse)"
echo "CPU already in use before the run: $(cpu_busy_pct)% over 1 s (figures from a busy machine are not comparable)"
echo "nginx $("$nginx_bin" -v 2>&1 | cut -d/ -f2), $("$blackbox_bin" --version 2>&1 | head -1)"
echo "destinations: $targets (${addrs[0]}-${addrs[-1]}, port $nginx_port), taken in turn by both probers"
echo

destinations=()
for addr in "${addrs[@]}"; do
    destinations+=(--tcp "$addr:$nginx_port" --http-url "http://$addr:$nginx_port/index.html")
done
status=0
"$consentry" bench probes \
    "${destinations[@]}" \
    --blackbox "http://127.0.0.1:$blackbox_port" \
    --blackbox-pid "$blackbox_pid" \
    ${bench_args[@]+"${bench_args[@]}"} || status=$?
exit "$status"
