#!/usr/bin/env bash
# A multi-host fleet on one machine: 2 dispatchers and 4 gateways, each in its own network
# namespace with its own address on a private bridge (docs/operations.md, "A fleet of hosts in
# network namespaces"). Needs root (ip netns); `make run` stays the loopback fleet.
#
#   run-hosts.sh [up]            build the network, start the fleet, show its logs; Ctrl-C (or
#                                SIGTERM/SIGHUP) stops every member and removes what it created
#   run-hosts.sh up --detach     the same, but return once every member is ready (tests, scripts);
#                                `run-hosts.sh down` removes it
#   run-hosts.sh down            stop every member and remove the namespaces, bridge and state;
#                                also cleans up after a crashed or SIGKILLed run
#   run-hosts.sh status          members, pids, addresses, faults in force
#   run-hosts.sh kill|stop|start MEMBER   SIGKILL / SIGTERM (and wait) / start one member again
#   run-hosts.sh silence MEMBER  the host goes silent: its link is cut at the bridge, nothing in
#                                or out, nothing closed (like a pulled cable or a hung host)
#   run-hosts.sh partition A B   drop every packet between hosts A and B (both stay reachable
#                                from everyone else); nothing is closed or refused
#   run-hosts.sh delay GW DUR    add DUR one way to every byte sent to GW's admin and rpc ports
#                                (needs GW in IMGATE_HOSTS_DELAYABLE when the fleet started)
#   run-hosts.sh heal [MEMBER]   undo the faults of MEMBER (all members without one)
#   run-hosts.sh exec MEMBER CMD...       run CMD inside MEMBER's namespace
#
# Members: d1 d2 (dispatchers), gw1..gw4 (gateways). Environment:
#   IMGATE_HOSTS_PREFIX   name prefix of namespaces, bridge and veths (default imh; ≤ 10 chars)
#   IMGATE_HOSTS_SUBNET   first three octets of the private /24 (default 10.77.0); the host is .1,
#                         dispatchers .11 .12, gateways .21 .22 .23 .24
#   IMGATE_HOSTS_RUN      state directory (default run-hosts/ in the repository)
#   IMGATE_HOSTS_CONFIG   directory with the gateway.yaml and dispatcher.yaml templates
#                         (default config/hosts; @ID@ and @ADDR@ are replaced per dispatcher)
#   IMGATE_HOSTS_WEIGHTS  gateway weights in order (default "100 100 50 50")
#   IMGATE_HOSTS_DELAYABLE gateways whose admin and rpc ports go through a delay relay from the
#                         start, so `delay` can act on them (default none)
#   BUILD_DIR / IMGATE_HOSTS_BIN  where the binaries are (default build/src; the relay in
#                         build/tests)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
prefix="${IMGATE_HOSTS_PREFIX:-imh}"
subnet="${IMGATE_HOSTS_SUBNET:-10.77.0}"
run="${IMGATE_HOSTS_RUN:-$root/run-hosts}"
# Commands after `up` take the subnet the fleet was started with.
[ -z "${IMGATE_HOSTS_SUBNET:-}" ] && [ -f "$run/subnet" ] && subnet=$(cat "$run/subnet")
read -r -a weights <<<"${IMGATE_HOSTS_WEIGHTS:-100 100 50 50}"
delayable=" ${IMGATE_HOSTS_DELAYABLE:-} "
dispatchers=(d1 d2)
gateways=(gw1 gw2 gw3 gw4)
members=("${gateways[@]}" "${dispatchers[@]}")
bridge="$prefix-br"
ready_timeout=15 # seconds a starting member gets to write its ready file
stop_timeout=10  # seconds a member gets after SIGTERM before SIGKILL
# Gateway ports (the same on every gateway host, as in a real deployment) and relay ports.
gw_client=9000 gw_admin=9100 gw_rpc=9200 relay_admin=19100 relay_rpc=19200
d_public=8080 d_admin=8081

say() { echo "run-hosts: $*"; }
die() {
    echo "run-hosts: error: $*" >&2
    exit 1
}

case "${BUILD_DIR:-build}" in
    /*) build="${BUILD_DIR:-build}" ;;
    *) build="$root/${BUILD_DIR:-build}" ;;
esac
bin="${IMGATE_HOSTS_BIN:-$build/src}"
relay_bin="${IMGATE_HOSTS_RELAY:-$build/tests/imgate-delay-relay}"

is_member() {
    local m
    for m in "${members[@]}"; do [ "$m" = "$1" ] && return 0; done
    return 1
}
is_gateway() { [[ "$1" == gw[1-4] ]]; }
ns_of() { echo "$prefix-$1"; }
addr_of() {
    case "$1" in
        d1) echo "$subnet.11" ;; d2) echo "$subnet.12" ;;
        gw*) echo "$subnet.2${1#gw}" ;;
        host) echo "$subnet.1" ;;
    esac
}

# Namespaces cannot be made without CAP_SYS_ADMIN; say so in one line (tests skip on exit 4).
need_root() {
    [ "$(id -u)" = 0 ] || {
        echo "run-hosts: needs root to create network namespaces (ip netns); run it with sudo," \
            "or use make run for the loopback fleet" >&2
        exit 4
    }
    command -v ip >/dev/null || {
        echo "run-hosts: ip (iproute2) is missing: apt-get install iproute2" >&2
        exit 4
    }
}

# ---- the network ----

net_exists() { ip netns list 2>/dev/null | grep -q "^$prefix-"; }

# Builds the bridge, one namespace per member with a veth into the bridge, and the addresses.
net_up() {
    local m ns
    [ "${#prefix}" -le 10 ] || die "IMGATE_HOSTS_PREFIX must be at most 10 characters (veth names)"
    [[ "$subnet" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "IMGATE_HOSTS_SUBNET must be three octets"
    if ip -4 -o addr show | grep -v " $bridge " | grep -q " inet $subnet\."; then
        echo "run-hosts: $subnet.0/24 is already used on this machine" \
            "(choose another IMGATE_HOSTS_SUBNET)" >&2
        exit 5
    fi
    ip link add "$bridge" type bridge || die "cannot create bridge $bridge"
    ip addr add "$(addr_of host)/24" dev "$bridge"
    ip link set "$bridge" up
    for m in "${members[@]}"; do
        ns=$(ns_of "$m")
        ip netns add "$ns" || die "cannot create network namespace $ns"
        ip link add "$prefix-$m" type veth peer name eth0 netns "$ns" ||
            die "cannot create veth $prefix-$m"
        ip link set "$prefix-$m" master "$bridge" up
        ip -n "$ns" addr add "$(addr_of "$m")/24" dev eth0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
    done
}

# Stops whatever runs in the namespaces and removes them, the bridge and the veths. Idempotent:
# it is also what cleans up after a run that was SIGKILLed.
net_down() {
    local ns p
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix-"); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$p" 2>/dev/null; done
    done
    local i left
    for ((i = 0; i < stop_timeout * 10; i++)); do
        left=0
        for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix-"); do
            [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && left=1
        done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix-"); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do
            say "pid $p in $ns still runs ${stop_timeout} s after SIGTERM: SIGKILL"
            kill -KILL "$p" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null
    done
    # Deleting a namespace removes its veth end and with it the peer in the bridge.
    ip link del "$bridge" 2>/dev/null
    for p in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^$prefix-"); do
        ip link del "$p" 2>/dev/null
    done
    return 0
}

# ---- configuration ----

secret() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

gen_config() {
    local tpl="${IMGATE_HOSTS_CONFIG:-$here}" c="$run/config" m i
    [ -f "$tpl/gateway.yaml" ] && [ -f "$tpl/dispatcher.yaml" ] ||
        die "$tpl must hold gateway.yaml and dispatcher.yaml"
    [ "${#weights[@]}" = "${#gateways[@]}" ] || die "IMGATE_HOSTS_WEIGHTS needs ${#gateways[@]} weights"
    rm -rf "$c"
    mkdir -p "$c"
    # Fresh secrets for every run, private to this user (the daemons refuse readable secrets).
    (
        umask 077
        for f in token.secret cluster.secret admin.token dispatcher-admin.token; do
            secret >"$c/$f"
        done
    )
    cp "$tpl/gateway.yaml" "$c/gateway.yaml"
    for m in "${dispatchers[@]}"; do
        sed -e "s/@ID@/$m/g" -e "s/@ADDR@/$(addr_of "$m")/g" "$tpl/dispatcher.yaml" >"$c/$m.yaml"
    done
    {
        echo "# Generated by run-hosts.sh: the fleet of the namespace hosts (same file for all)."
        echo "cluster:"
        echo "  secret_file: cluster.secret"
        echo "gateways:"
        i=0
        for m in "${gateways[@]}"; do
            local a
            a=$(addr_of "$m")
            echo "  - id: $m"
            echo "    client: $a:$gw_client"
            echo "    admin: $a:$gw_admin"
            echo "    rpc: $a:$gw_rpc"
            echo "    weight: ${weights[$i]}"
            echo "    region: default"
            echo "    labels: {host: $(ns_of "$m")}"
            i=$((i + 1))
        done
    } >"$c/fleet.yaml"
}

# ---- members ----

json_str() { sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p" "$1" 2>/dev/null; }
json_num() { sed -n "s/.*\"$2\":\([0-9][0-9]*\).*/\1/p" "$1" 2>/dev/null; }

# The pid of member M's daemon in $pid, if it runs (it must still run in M's namespace).
member_pid() {
    pid=""
    local p
    p=$(cat "$run/$1.pid" 2>/dev/null) || return 1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 1
    ip netns pids "$(ns_of "$1")" 2>/dev/null | grep -qx "$p" || return 1
    pid=$p
}

# Starts member M's daemon inside its namespace, in its own session (a terminal's Ctrl-C reaches
# only this script). setsid does not fork here (a background job is no group leader), so $! is
# the daemon's pid once `ip netns exec` has exec'd it.
launch() {
    local m=$1 c="$run/config"
    local -a argv
    rm -f "$run/$m.ready" "$run/$m.pid"
    if is_gateway "$m"; then
        argv=("$bin/imgate-gateway" --config "$c/gateway.yaml" --id "$m" --ready-file "$run/$m.ready")
    else
        argv=("$bin/imgate-dispatcher" --config "$c/$m.yaml" --ready-file "$run/$m.ready")
    fi
    ip netns exec "$(ns_of "$m")" setsid "${argv[@]}" </dev/null >>"$run/$m.log" 2>&1 &
    echo "$!" >"$run/$m.pid"
}

# The delay relay of gateway G: its admin and rpc ports are redirected (nft, in G's namespace)
# to the relay, which forwards them to the real ports after the delay in $run/G.delay.
start_relay() {
    local g=$1 a ns
    a=$(addr_of "$g")
    ns=$(ns_of "$g")
    [ -x "$relay_bin" ] || die "$relay_bin is missing (make build builds it with the tests)"
    command -v nft >/dev/null || die "nft (nftables) is missing: apt-get install nftables"
    echo 0ms >"$run/$g.delay"
    ip netns exec "$ns" setsid "$relay_bin" --route "$a:$relay_admin=$a:$gw_admin" \
        --route "$a:$relay_rpc=$a:$gw_rpc" --delay-file "$run/$g.delay" \
        --ready-file "$run/$g.relay.ready" </dev/null >>"$run/$g.relay.log" 2>&1 &
    echo "$!" >"$run/$g.relay.pid"
    ip netns exec "$ns" nft -f - <<EOF || die "cannot install the relay redirect in $ns"
table ip imgate_relay {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    tcp dport $gw_admin redirect to :$relay_admin
    tcp dport $gw_rpc redirect to :$relay_rpc
  }
}
EOF
}

# Waits until every named file exists or a member died; false (naming it) otherwise.
wait_ready() {
    local i m missing
    for ((i = 0; i < ready_timeout * 10; i++)); do
        missing=0
        for m in "$@"; do
            [ -f "$run/$m.ready" ] && continue
            missing=1
            if ! kill -0 "$(cat "$run/$m.pid" 2>/dev/null)" 2>/dev/null; then
                echo "run-hosts: error: $m exited during start-up; the end of its log:" >&2
                tail -n 5 "$run/$m.log" >&2
                return 1
            fi
        done
        [ "$missing" = 0 ] && return 0
        sleep 0.1
    done
    echo "run-hosts: error: not ready within ${ready_timeout} s:" \
        "$(for m in "$@"; do [ -f "$run/$m.ready" ] || printf '%s ' "$m"; done)" >&2
    return 1
}

stop_member() {
    local i
    member_pid "$1" || {
        say "$1 is not running"
        return 0
    }
    kill -TERM "$pid"
    for ((i = 0; i < stop_timeout * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$1 (pid $pid) still runs ${stop_timeout} s after SIGTERM: SIGKILL"
        kill -KILL "$pid"
    fi
    rm -f "$run/$1.ready"
    say "$1 stopped"
}

print_fleet() {
    local m
    echo
    echo "Fleet of hosts up (bridge $bridge, host $(addr_of host); state and logs in $run):"
    for m in "${dispatchers[@]}"; do
        printf '  %-4s netns %-10s public http://%s:%s  admin http://%s:%s/ (dashboard)\n' "$m" \
            "$(ns_of "$m")" "$(addr_of "$m")" "$d_public" "$(addr_of "$m")" "$d_admin"
    done
    local i=0
    for m in "${gateways[@]}"; do
        printf '  %-4s netns %-10s client %s:%s  admin %s:%s  rpc %s:%s  weight %s%s\n' "$m" \
            "$(ns_of "$m")" "$(addr_of "$m")" "$gw_client" "$(addr_of "$m")" "$gw_admin" \
            "$(addr_of "$m")" "$gw_rpc" "${weights[$i]}" \
            "$([[ "$delayable" == *" $m "* ]] && echo "  (delayable)")"
        i=$((i + 1))
    done
    local d1 d2
    d1="http://$(addr_of d1):$d_public" d2="http://$(addr_of d2):$d_public"
    # Plain echos (no heredoc): a Ctrl-C while bash reads a heredoc with $(...) in it breaks
    # the trap that should stop the fleet.
    local self host
    self=$(self_cmd)
    host=$(addr_of host)
    echo
    echo "From this machine (the host is $host on the bridge):"
    echo "  $bin/imgate get-gateway --dispatcher $d1 --dispatcher $d2"
    echo "  $bin/imgate listen --dispatcher $d1,$d2 --secret-file $run/config/token.secret -u alice@example.com"
    echo "  $bin/imgate send --dispatcher $d1,$d2 --secret-file $run/config/token.secret -u bob@example.com --to alice@example.com hello"
    echo "  curl -s http://$(addr_of d1):$d_admin/status"
    echo "Faults (from another terminal): $self silence gw2 | partition gw1 gw2 | kill d1 | heal | status"
}

# This script as another terminal should call it: with the environment that names this fleet.
self_cmd() {
    local sh="config/hosts/run-hosts.sh" env=""
    [ "$PWD" = "$root" ] || sh="$here/run-hosts.sh"
    [ "$prefix" = imh ] || env+="IMGATE_HOSTS_PREFIX=$prefix "
    [ "$run" = "$root/run-hosts" ] || env+="IMGATE_HOSTS_RUN=$run "
    echo "$env$sh"
}

# ---- faults ----

fault_table="imgate_fault"

cmd_silence() {
    is_member "$1" || die "unknown member $1"
    ip link set "$prefix-$1" down || die "cannot take $prefix-$1 down"
    echo "$1" >>"$run/faults"
    say "$1 ($(addr_of "$1")) is silent: its link is down at the bridge (heal $1 to undo)"
}

# Drops, on both sides' input, every packet from the other: each side's packets leave and vanish,
# as on a cut path between two sites.
cmd_partition() {
    local a=$1 b=$2
    is_member "$a" && is_member "$b" && [ "$a" != "$b" ] || die "partition needs two members"
    command -v nft >/dev/null || die "nft (nftables) is missing: apt-get install nftables"
    local x y
    for x in "$a" "$b"; do
        y=$b
        [ "$x" = "$b" ] && y=$a
        ip netns exec "$(ns_of "$x")" nft -f - <<EOF || die "cannot add the partition rule in $x"
table inet $fault_table {
  chain input {
    type filter hook input priority filter; policy accept;
    ip saddr $(addr_of "$y") drop
  }
}
EOF
    done
    echo "$a $b" >>"$run/faults"
    say "partition between $a and $b: packets between them are dropped (heal to undo)"
}

cmd_delay() {
    local g=$1 d=$2
    is_gateway "$g" || die "delay needs a gateway (gw1..gw4)"
    [[ "$delayable" == *" $g "* ]] && [ -f "$run/$g.relay.pid" ] ||
        die "$g was not started delayable: start the fleet with IMGATE_HOSTS_DELAYABLE=$g"
    [[ "$d" =~ ^[0-9]+(ms|s)$ ]] || die "delay takes a duration like 300ms or 2s"
    echo "$d" >"$run/$g.delay"
    kill -HUP "$(cat "$run/$g.relay.pid")" || die "the relay of $g is not running"
    say "$g: ${d} added one way to every byte sent to its admin and rpc ports"
}

cmd_heal() {
    local m
    for m in "${members[@]}"; do
        [ $# -gt 0 ] && [ "$1" != "$m" ] && continue
        ip link set "$prefix-$m" up 2>/dev/null
        ip netns exec "$(ns_of "$m")" nft delete table inet "$fault_table" 2>/dev/null
        if [ -f "$run/$m.relay.pid" ] && [ "$(cat "$run/$m.delay" 2>/dev/null)" != 0ms ]; then
            echo 0ms >"$run/$m.delay"
            kill -HUP "$(cat "$run/$m.relay.pid")" 2>/dev/null
        fi
    done
    [ $# -gt 0 ] && grep -vw "$1" "$run/faults" >"$run/faults.tmp" 2>/dev/null
    [ $# -gt 0 ] && mv -f "$run/faults.tmp" "$run/faults" || : >"$run/faults"
    say "healed ${1:-every member}"
}

cmd_status() {
    local m
    net_exists || {
        echo "no fleet of hosts is running (prefix $prefix)"
        return 3
    }
    echo "fleet of hosts (prefix $prefix, subnet $subnet.0/24, state in $run):"
    for m in "${members[@]}"; do
        if member_pid "$m"; then
            printf '  %-4s %-15s running  pid %s\n' "$m" "$(addr_of "$m")" "$pid"
        else
            printf '  %-4s %-15s not running\n' "$m" "$(addr_of "$m")"
        fi
    done
    [ -s "$run/faults" ] && echo "faults in force: $(tr '\n' ';' <"$run/faults")"
    return 0
}

# ---- up / down ----

# The state directory, only if this prefix made it (a `down` for another prefix leaves it).
remove_run() {
    [ -d "$run" ] || return 0
    [ "$(cat "$run/prefix" 2>/dev/null)" = "$prefix" ] && rm -rf "$run"
    return 0
}

cmd_down() {
    net_down
    remove_run
    say "fleet of hosts removed (prefix $prefix)"
}

cmd_up() {
    local detach=0 m
    [ "${1:-}" = --detach ] && detach=1
    for m in imgate-dispatcher imgate-gateway imgate; do
        [ -x "$bin/$m" ] || die "$bin/$m is missing: run make build (or make run-hosts)"
    done
    if net_exists || ip link show "$bridge" >/dev/null 2>&1; then
        say "removing what an earlier run left (prefix $prefix)"
        net_down
    fi
    remove_run
    [ -e "$run" ] && die "$run belongs to another fleet of hosts (prefix $(cat "$run/prefix" 2>/dev/null || echo unknown)); set IMGATE_HOSTS_RUN"
    mkdir -p "$run"
    echo "$prefix" >"$run/prefix"
    echo "$subnet" >"$run/subnet"
    : >"$run/faults"
    # A start that fails half way removes what it made, in both modes.
    trap 'stop_all $?' EXIT
    [ "$detach" = 0 ] && trap 'stop_all 0' INT TERM HUP
    net_up
    gen_config
    local -a relays=()
    for m in "${gateways[@]}"; do
        [[ "$delayable" == *" $m "* ]] && start_relay "$m" && relays+=("$m.relay")
    done
    [ "${#relays[@]}" = 0 ] || wait_ready "${relays[@]}" || exit 1
    for m in "${gateways[@]}"; do launch "$m"; done
    wait_ready "${gateways[@]}" || exit 1
    for m in "${dispatchers[@]}"; do launch "$m"; done
    wait_ready "${dispatchers[@]}" || exit 1
    print_fleet
    if [ "$detach" = 1 ]; then
        trap - EXIT
        say "detached; stop and remove with: $(self_cmd) down"
        return 0
    fi
    echo "Ctrl-C stops the fleet and removes the namespaces."
    # Shows every member's log here until Ctrl-C; reports a member that exits.
    (cd "$run" && trap '' INT && exec tail -n 0 -F -s 0.2 --pid=$$ gw1.log gw2.log gw3.log \
        gw4.log d1.log d2.log 2>/dev/null) &
    declare -A reported
    while sleep 1; do
        for m in "${members[@]}"; do
            if member_pid "$m"; then
                reported[$m]=""
            elif [ -z "${reported[$m]:-}" ]; then
                reported[$m]=1
                say "$m is not running (start it again: $(self_cmd) start $m)"
            fi
        done
    done
}

stop_all() {
    trap - EXIT INT TERM HUP
    echo
    [ "$1" = 0 ] || say "start-up failed (status $1)"
    say "stopping the fleet and removing the namespaces"
    net_down
    remove_run
    say "done"
    exit "$1"
}

cmd="${1:-up}"
[ $# -gt 0 ] && shift
case "$cmd" in
    up) need_root && cmd_up "$@" ;;
    down) need_root && cmd_down ;;
    status) need_root && cmd_status ;;
    kill | stop | start)
        need_root
        is_member "${1:-}" || die "$cmd needs a member: ${members[*]}"
        case "$cmd" in
            kill) member_pid "$1" && kill -KILL "$pid" && rm -f "$run/$1.ready" && say "$1 killed (SIGKILL)" ;;
            stop) stop_member "$1" ;;
            start)
                member_pid "$1" && die "$1 already runs (pid $pid)"
                launch "$1"
                wait_ready "$1" || exit 1
                say "$1 started"
                ;;
        esac
        ;;
    silence) need_root && cmd_silence "${1:-}" ;;
    partition) need_root && cmd_partition "${1:-}" "${2:-}" ;;
    delay) need_root && cmd_delay "${1:-}" "${2:-}" ;;
    heal) need_root && cmd_heal "$@" ;;
    exec)
        need_root
        is_member "${1:-}" || die "exec needs a member: ${members[*]}"
        ns=$(ns_of "$1")
        shift
        exec ip netns exec "$ns" "$@"
        ;;
    -h | --help | help) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command $cmd (see $0 --help)" ;;
esac
