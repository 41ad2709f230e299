#!/usr/bin/env bash
# Kernel-level bandwidth emulation for split computing: the edge server and the device
# run in two network namespaces joined by a veth pair; tc netem shapes both directions
# (rate in Mbit/s, one-way delay in ms), so the round trip is 2 x delay. Kernels without
# sch_netem get rate shaping only, with tbf (a token bucket of at least one packet, so a
# request smaller than the burst passes at line rate: see benchmarks/RESULTS_split.md).
#
#   sudo scripts/netns_split.sh up 5 10          # create namespaces, 5 Mbit/s, 10 ms each way
#   sudo scripts/netns_split.sh shape 1 20       # change the link
#   sudo scripts/netns_split.sh server CMD...    # run CMD in the server namespace
#   sudo scripts/netns_split.sh client CMD...    # run CMD in the device namespace
#   sudo scripts/netns_split.sh down             # remove everything
#   sudo scripts/netns_split.sh measure RUN_DIR TOKEN_FILE MBIT DELAY_MS IMAGE...
#        up + server + `edgedistill split infer --json` for each image + down
#
# Only addresses inside the namespaces this script creates are used (SUBNET, default
# 10.231.0.0/30; it must be a 10.x prefix); nothing outside them is touched.
set -euo pipefail

NS_SRV=${NS_SRV:-eds-srv}
NS_CLI=${NS_CLI:-eds-cli}
SUBNET=${SUBNET:-10.231.0}
PORT=${PORT:-8765}
PYTHON=${PYTHON:-.venv/bin/python}
SRV_IP=$SUBNET.1
CLI_IP=$SUBNET.2
IF_SRV=eds-srv0
IF_CLI=eds-cli0

die() { echo "netns_split: $*" >&2; exit 2; }

[[ $(id -u) == 0 ]] || die "needs root (network namespaces and tc)"
[[ $SUBNET =~ ^10\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "SUBNET must be 10.x.y (got $SUBNET)"
command -v tc >/dev/null || die "tc not found (apt-get install iproute2)"

number() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$2 must be a number, got '$1'"; }

has_netem() {
    ip netns exec "$NS_SRV" tc qdisc replace dev "$IF_SRV" root netem delay 0ms 2>/dev/null
}

shape() {
    number "$1" rate; number "$2" delay
    local ns dev
    if has_netem; then
        for ns in "$NS_SRV:$IF_SRV" "$NS_CLI:$IF_CLI"; do
            ip netns exec "${ns%%:*}" tc qdisc replace dev "${ns#*:}" root netem \
                rate "${1}mbit" delay "${2}ms" limit 100000
        done
    else
        [[ $2 =~ ^0+(\.0+)?$ ]] || die "this kernel has no sch_netem, so no delay; shaping \
the rate only (tbf) needs DELAY_MS 0 (emulate delay with 'split infer --mbit --delay-ms')"
        local burst
        burst=$(awk -v r="$1" 'BEGIN { b = r * 1e6 / 8 / 250; print (b < 1600 ? 1600 : int(b)) }')
        for ns in "$NS_SRV:$IF_SRV" "$NS_CLI:$IF_CLI"; do
            ip netns exec "${ns%%:*}" tc qdisc replace dev "${ns#*:}" root tbf \
                rate "${1}mbit" burst "$burst" limit 1000000
        done
        echo "no sch_netem in this kernel: tbf rate only (burst $burst bytes)" >&2
    fi
    echo "link $SRV_IP <-> $CLI_IP: ${1} Mbit/s, ${2} ms each way"
}

up() {
    down 2>/dev/null || true
    ip netns add "$NS_SRV"
    ip netns add "$NS_CLI"
    ip link add "$IF_SRV" netns "$NS_SRV" type veth peer name "$IF_CLI" netns "$NS_CLI"
    ip -n "$NS_SRV" addr add "$SRV_IP/30" dev "$IF_SRV"
    ip -n "$NS_CLI" addr add "$CLI_IP/30" dev "$IF_CLI"
    ip -n "$NS_SRV" link set lo up
    ip -n "$NS_CLI" link set lo up
    ip -n "$NS_SRV" link set "$IF_SRV" up
    ip -n "$NS_CLI" link set "$IF_CLI" up
    shape "$1" "$2"
}

down() {
    ip netns del "$NS_SRV" 2>/dev/null || true
    ip netns del "$NS_CLI" 2>/dev/null || true
}

measure() {
    (( $# >= 5 )) || die "measure RUN_DIR TOKEN_FILE MBIT DELAY_MS IMAGE..."
    local run=$1 token=$2 mbit=$3 delay=$4
    shift 4
    up "$mbit" "$delay"
    ip netns exec "$NS_SRV" "$PYTHON" -m edgedistill.split.cli serve "$run" \
        --host "$SRV_IP" --port "$PORT" --token-file "$token" >/dev/null &
    SERVER_PID=$!
    trap 'kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; down' EXIT
    for _ in $(seq 120); do
        ip netns exec "$NS_CLI" "$PYTHON" -c "import httpx,sys; sys.exit(httpx.get(
            'http://$SRV_IP:$PORT/health', timeout=2).status_code != 200)" 2>/dev/null && break
        sleep 0.5
    done
    ip netns exec "$NS_CLI" "$PYTHON" -m edgedistill.split.cli infer "$run" "$@" \
        --server "http://$SRV_IP:$PORT" --token-file "$token" --json
}

case ${1:-} in
    up) (( $# == 3 )) || die "up MBIT DELAY_MS"; up "$2" "$3" ;;
    shape) (( $# == 3 )) || die "shape MBIT DELAY_MS"; shape "$2" "$3" ;;
    down) down ;;
    server) shift; ip netns exec "$NS_SRV" "$@" ;;
    client) shift; ip netns exec "$NS_CLI" "$@" ;;
    measure) shift; measure "$@" ;;
    *) die "usage: $0 up|shape|down|server|client|measure ... (see the header)" ;;
esac
