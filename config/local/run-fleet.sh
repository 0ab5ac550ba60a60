#!/usr/bin/env bash
# The local fleet: 1 dispatcher + gw1..gw3 on loopback (docs/operations.md, "The local fleet").
#
#   run-fleet.sh                  start all four and stay in the foreground, showing their logs;
#                                 a member that exits is reported, the others keep running;
#                                 Ctrl-C, SIGTERM or SIGHUP stops every member (one SIGTERM each)
#   run-fleet.sh status           which members run, with their pids (exit 3: no fleet running)
#   run-fleet.sh stop MEMBER      stop one member gracefully (MEMBER: gw1, gw2, gw3, dispatcher)
#   run-fleet.sh restart MEMBER   stop it if it runs, start it again with the same config
#
# Before starting, it makes the development CA and server certificate of the tls/ws/wss
# listeners in CONFIG/certs (dev-certs.sh; see make_dev_certs below for when).
# Each member runs in its own session (setsid), so a terminal's Ctrl-C reaches only this script,
# which then sends each member exactly one SIGTERM. A member's stdout+stderr go to RUN/MEMBER.log.
# State of the running fleet, all in RUN (the repo's run/, git-ignored):
#   fleet.pid  this script's pid          fleet.env  config and binary directories in use
#   M.pid      member M's daemon pid      M.ready    its ready file (JSON: addresses, pid)
#   M.exit     "pid status" of its last exit          M.log  its log (appended across restarts)
# Environment: BUILD_DIR (default build; relative to the repo or absolute), IMGATE_FLEET_CONFIG
# (directory with dispatcher.yaml, gateway.yaml and what they name; default config/local),
# IMGATE_FLEET_RUN (state directory; default run/ in the repo), IMGATE_FLEET_DIRECTORY
# (announced, the default, or redis: `make run DIRECTORY=redis` also starts a redis-server of its
# own on a unix socket in RUN and runs the gateways in redis mode with upstream events; see
# docs/operations.md, "The local fleet in redis mode"). status/stop/restart read the config and
# binary directories and the mode from RUN/fleet.env, so they only need IMGATE_FLEET_RUN.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
root=$(cd "$here/../.." && pwd)
run="${IMGATE_FLEET_RUN:-$root/run}"
members=(gw1 gw2 gw3 dispatcher)
directory=${IMGATE_FLEET_DIRECTORY:-announced}
# status/stop/restart from another terminal: the running fleet's mode decides its members.
if [ "${1:-}" != "" ] && [ -f "$run/fleet.env" ]; then
    directory=$(sed -n 's/^directory=//p' "$run/fleet.env")
    directory=${directory:-announced}
fi
case "$directory" in
    announced) ;;
    redis) members=(redis gw1 gw2 gw3 dispatcher) ;;
    *) echo "run-fleet: error: IMGATE_FLEET_DIRECTORY must be announced or redis, not '$directory'" >&2
       exit 1 ;;
esac
stop_timeout=20   # seconds a member gets after SIGTERM (gateway shutdown_grace is 10 s)
ready_timeout=10  # seconds a starting member gets to write its ready file

# How to call this script from another terminal, as the tips and messages print it.
show_run=$run
if [ "$PWD" = "$root" ]; then
    show_self="config/local/run-fleet.sh"
    [ "$run" = "$root/run" ] && show_run=run
else
    show_self="$self"
fi
[ -n "${IMGATE_FLEET_RUN:-}" ] && show_self="IMGATE_FLEET_RUN=$run $show_self"

say() { echo "run-fleet: $*"; }
die() { echo "run-fleet: error: $*" >&2; exit 1; }

is_member() {
    local m
    for m in "${members[@]}"; do [ "$m" = "$1" ] && return 0; done
    return 1
}

# The value of "key":"value" in a flat JSON ready file.
json_str() { sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p" "$1" 2>/dev/null; }

# " tls HOST:PORT ws ... wss ..." for the transports gateway M's ready file names besides tcp.
transports_of() {
    local t a out=""
    for t in tls ws wss; do
        a=$(json_str "$run/$1.ready" "$t")
        [ -n "$a" ] && out+=" $t $a"
    done
    printf '%s' "$out"
}

# "status 0" / "killed by SIGKILL" from a wait status as bash reports it.
describe_status() {
    if [ "$1" -gt 128 ] 2>/dev/null; then
        echo "killed by SIG$(kill -l $(($1 - 128)) 2>/dev/null || echo "?")"
    else
        echo "status $1"
    fi
}

# The pid of a running member in $pid; false if it does not run. The pid must still be the
# member's daemon (its command line names the binary and the member), not a reused pid.
member_pid() {
    pid=""
    local p cmdline
    p=$(cat "$run/$1.pid" 2>/dev/null) || return 1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 1
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || return 1
    case "$1" in
        dispatcher) [[ "$cmdline" == *imgate-dispatcher* ]] || return 1 ;;
        redis) [[ "$cmdline" == *redis-server* ]] || return 1 ;;
        *) [[ "$cmdline" == *imgate-gateway*" --id $1 "* ]] || return 1 ;;
    esac
    pid=$p
}

fleet_pid() {
    local p
    p=$(cat "$run/fleet.pid" 2>/dev/null) || return 1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 1
    tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q 'run-fleet' || return 1
    echo "$p"
}

load_env() {
    config="" bin="" gateway_yaml=gateway.yaml
    local k v
    while IFS='=' read -r k v; do
        case "$k" in config) config=$v ;; bin) bin=$v ;; gateway_yaml) gateway_yaml=$v ;; esac
    done <"$run/fleet.env"
    [ -n "$config" ] && [ -n "$bin" ] || die "$run/fleet.env is incomplete"
}

# Internal (run as `setsid run-fleet.sh __member M`): runs member M's daemon as a child, records
# its pid, waits for it and records how it exited. Runs in its own session, so no terminal
# signal reaches it or the daemon.
member_main() {
    local m=$1 p rc
    local -a argv
    load_env
    if [ "$m" = dispatcher ]; then
        argv=("$bin/imgate-dispatcher" --config "$config/dispatcher.yaml"
              --ready-file "$run/dispatcher.ready")
    elif [ "$m" = redis ]; then
        # No TCP listener (port 0), no persistence: the fleet's own scratch Redis.
        argv=(redis-server --port 0 --unixsocket "$run/redis.sock" --unixsocketperm 700
              --save "" --appendonly no --dir "$run")
    else
        argv=("$bin/imgate-gateway" --config "$config/$gateway_yaml" --id "$m"
              --ready-file "$run/$m.ready")
    fi
    "${argv[@]}" </dev/null >>"$run/$m.log" 2>&1 &
    p=$!
    echo "$p" >"$run/$m.pid.tmp" && mv -f "$run/$m.pid.tmp" "$run/$m.pid"
    if [ "$m" = redis ]; then
        # redis-server has no ready file: it is ready once it answers on its socket.
        local i
        for ((i = 0; i < ready_timeout * 10; i++)); do
            if [ "$(redis-cli -s "$run/redis.sock" ping 2>/dev/null)" = PONG ]; then
                printf '{"unix":"%s","pid":%s}\n' "$run/redis.sock" "$p" >"$run/redis.ready"
                break
            fi
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
    fi
    wait "$p" 2>/dev/null  # (no "Killed" job message in the log: the fleet reports it)
    rc=$?
    rm -f "$run/$m.ready" "$run/$m.pid"
    echo "$p $rc" >"$run/$m.exit.tmp" && mv -f "$run/$m.exit.tmp" "$run/$m.exit"
}

# Starts member M in its own session; its log is appended to RUN/M.log.
launch() {
    rm -f "$run/$1.ready" "$run/$1.pid" "$run/$1.exit" "$run/$1.stop-requested"
    setsid "$self" __member "$1" </dev/null >>"$run/$1.log" 2>&1 9>&- &
    launched=$!
}

# Waits until every member named has written its ready file, or one of them exited, or
# ready_timeout passed. False (naming the culprit) unless all are ready.
wait_ready() {
    local i m missing
    for ((i = 0; i < ready_timeout * 10; i++)); do
        missing=0
        for m in "$@"; do
            if [ -f "$run/$m.exit" ]; then
                echo "run-fleet: error: $m exited during start-up ($(describe_status \
                    "$(cut -d' ' -f2 "$run/$m.exit")")); the end of $run/$m.log:" >&2
                tail -n 5 "$run/$m.log" >&2
                return 1
            fi
            [ -f "$run/$m.ready" ] && [ -f "$run/$m.pid" ] || missing=1
        done
        [ "$missing" -eq 0 ] && return 0
        sleep 0.1
    done
    echo "run-fleet: error: not ready within ${ready_timeout} s:" \
        "$(for m in "$@"; do [ -f "$run/$m.ready" ] || printf '%s ' "$m"; done)" >&2
    return 1
}

# Waits (bounded by stop_timeout) until every member named has exited, then SIGKILLs any that
# still run. Prints one line per member. Returns 1 if one needed SIGKILL.
wait_stopped() {
    local i m left rc=0
    for ((i = 0; i < stop_timeout * 10; i++)); do
        left=0
        for m in "$@"; do member_pid "$m" && left=1; done
        [ "$left" -eq 0 ] && break
        sleep 0.1
    done
    for m in "$@"; do
        if member_pid "$m"; then
            say "$m (pid $pid) still runs ${stop_timeout} s after SIGTERM: sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            rc=1
        fi
    done
    for m in "$@"; do
        # The member's runner writes M.exit right after reaping the daemon.
        for ((i = 0; i < 20; i++)); do [ -f "$run/$m.exit" ] && break; sleep 0.1; done
        if [ -f "$run/$m.exit" ]; then
            say "$m stopped ($(describe_status "$(cut -d' ' -f2 "$run/$m.exit")"))"
        else
            say "$m stopped (exit status unknown)"
        fi
    done
    return "$rc"
}

# ---- status / stop / restart (from another terminal) ----

cmd_status() {
    local fp m line p rc
    if ! fp=$(fleet_pid); then
        echo "no local fleet is running (state directory $run)"
        return 3
    fi
    echo "local fleet running: run-fleet.sh pid $fp, state and logs in $run"
    for m in "${members[@]}"; do
        if member_pid "$m"; then
            if [ "$m" = dispatcher ]; then
                line="public $(json_str "$run/$m.ready" public)  admin $(json_str "$run/$m.ready" admin)"
            else
                line="client $(json_str "$run/$m.ready" client)$(transports_of "$m")  admin $(json_str "$run/$m.ready" admin)"
            fi
            printf '  %-10s running  pid %-7s %s\n' "$m" "$pid" "$line"
        elif [ -f "$run/$m.exit" ]; then
            read -r p rc <"$run/$m.exit"
            printf '  %-10s not running (pid %s exited: %s)\n' "$m" "$p" "$(describe_status "$rc")"
        else
            printf '  %-10s not running\n' "$m"
        fi
    done
}

# One member at a time: concurrent stop/restart of the same member wait for each other.
lock_member() {
    exec 9>"$run/$1.lock"
    flock -w 60 9 || die "another stop/restart of $1 is still running"
}

stop_member() {
    if member_pid "$1"; then
        say "stopping $1 (pid $pid) with SIGTERM"
        touch "$run/$1.stop-requested"
        kill -TERM "$pid"
        wait_stopped "$1"
        return
    fi
    say "$1 is not running"
}

cmd_stop() {
    fleet_pid >/dev/null || die "no local fleet is running (state directory $run)"
    lock_member "$1"
    stop_member "$1"
}

cmd_restart() {
    fleet_pid >/dev/null || die "no local fleet is running (start it with make run; state directory $run)"
    load_env
    lock_member "$1"
    stop_member "$1" || true
    launch "$1"
    wait_ready "$1" || exit 1
    member_pid "$1"
    say "$1 is running again (pid $pid); its log: $run/$1.log"
}

# ---- the fleet in the foreground ----

follower="" keeper="" tick=""
runners=()

# Shows every member's log in this terminal: tail -F follows the files across restarts. It ends
# on its own, after printing what is left, once the keeper is gone; the keeper ends when this
# script does (even if it is SIGKILLed) or when stop_follower ends it.
start_follower() {
    local -a logs=()
    local m
    for m in "${members[@]}"; do logs+=("$m.log"); done
    tail -s 1 --pid=$$ -f /dev/null &
    keeper=$!
    # A subshell does not keep the SIGINT ignore of background commands: set it again, so the
    # logs of the shutdown a Ctrl-C starts are still shown.
    (cd "$run" && trap '' INT QUIT && exec tail -n +1 -F -s 0.1 --pid="$keeper" \
        "${logs[@]}") &
    follower=$!
}

stop_follower() {
    local i
    [ -n "$keeper" ] && kill -TERM "$keeper" 2>/dev/null && wait "$keeper" 2>/dev/null
    if [ -n "$follower" ]; then
        for ((i = 0; i < 30; i++)); do kill -0 "$follower" 2>/dev/null || break; sleep 0.1; done
        kill -TERM "$follower" 2>/dev/null
        wait "$follower" 2>/dev/null
    fi
}

stop_fleet() {
    local rc=${1:-0} m
    local -a signalled
    trap - EXIT
    trap 'say "already stopping (each member has up to ${stop_timeout} s)"' INT TERM HUP
    [ -n "$tick" ] && kill -TERM "$tick" 2>/dev/null
    # Removed first, so a `restart` from another terminal refuses from now on.
    rm -f "$run/fleet.pid"
    echo
    say "stopping the fleet: one SIGTERM to each member"
    # A second sweep catches a member a concurrent `restart` started meanwhile.
    for _ in 1 2; do
        signalled=()
        for m in "${members[@]}"; do
            if member_pid "$m"; then
                kill -TERM "$pid" 2>/dev/null
                signalled+=("$m")
            fi
        done
        [ "${#signalled[@]}" -eq 0 ] && break
        wait_stopped "${signalled[@]}" || rc=1
    done
    for m in "${runners[@]}"; do wait "$m" 2>/dev/null; done  # runners this script started
    stop_follower
    rm -f "$run"/*.ready "$run"/*.pid "$run"/*.stop-requested "$run"/*.lock "$run/fleet.env"
    say "fleet stopped"
    exit "$rc"
}

# One line per member exit or restart seen since the last check.
declare -A seen_exit seen_pid
check_members() {
    local m line p rc how hint
    for m in "${members[@]}"; do
        if [ -f "$run/$m.exit" ]; then
            line=$(cat "$run/$m.exit" 2>/dev/null) || continue
            if [ -n "$line" ] && [ "${seen_exit[$m]:-}" != "$line" ]; then
                seen_exit[$m]=$line
                read -r p rc <<<"$line"
                how=$(describe_status "$rc")
                if [ -f "$run/$m.stop-requested" ]; then
                    say "$m (pid $p) stopped on request ($how); start it again: $show_self restart $m"
                    continue
                fi
                if [ "$m" = dispatcher ]; then
                    hint="the gateways keep running but nothing hands them out"
                else
                    hint="the rest of the fleet keeps running and the dispatcher stops handing $m out"
                fi
                say "$m (pid $p) exited ($how); $hint. Restart it: $show_self restart $m"
            fi
        elif member_pid "$m" && [ "${seen_pid[$m]:-}" != "$pid" ]; then
            [ -n "${seen_pid[$m]:-}${seen_exit[$m]:-}" ] && say "$m is running again (pid $pid)"
            seen_pid[$m]=$pid
        fi
    done
}

# The development CA and server certificate the tls and wss listeners use (gateway.yaml names
# certs/server.crt and certs/server.key next to it). For the repository's config/local,
# dev-certs.sh runs on every start: it does nothing while the certificate is valid for 30 more
# days and renews it otherwise. Another IMGATE_FLEET_CONFIG directory is the caller's: its certs/
# are only made when gateway.yaml names them and they are missing, never replaced. The keys are
# made here, on this machine, into a git-ignored directory; none is ever committed.
make_dev_certs() {
    local certs="$config/certs" script="$here/dev-certs.sh"
    if ! [ "$config" -ef "$here" ]; then
        grep -q 'certs/server\.crt' "$config/gateway.yaml" 2>/dev/null || return 0
        [ -s "$certs/server.crt" ] && [ -s "$certs/server.key" ] && return 0
    fi
    local out
    if ! out=$("$script" "$certs" 2>&1); then
        # A read-only checkout cannot get its certificates: say what to do instead of starting
        # gateways that would refuse their tls block.
        [ -s "$certs/server.crt" ] && [ -s "$certs/server.key" ] && {
            say "warning: could not renew the development certificate in $certs: $out"
            return 0
        }
        die "could not make the development certificates in $certs: $out
  (a read-only checkout? copy config/local elsewhere and start with IMGATE_FLEET_CONFIG=DIR)"
    fi
    [ -n "$out" ] && say "${out#dev-certs.sh: }"
    return 0
}

# redis mode: gateway.redis.yaml next to gateway.yaml (so its relative paths still hold; git-
# ignored in config/local), the same settings plus the directory, redis and events sections on
# the fleet's own Redis. A gateway.yaml that configures those sections itself is used as it is.
make_redis_config() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        die "redis-server and redis-cli are missing: make run DIRECTORY=redis installs them (redis-server, redis-tools)"
    fi
    if grep -Eq '^(directory|redis|events):' "$config/gateway.yaml"; then
        if ! grep -Eq '^directory:' "$config/gateway.yaml" || ! grep -Eq '^redis:' "$config/gateway.yaml"; then
            die "$config/gateway.yaml has some of the directory/redis/events sections but not a redis directory"
        fi
        return 0
    fi
    gateway_yaml=gateway.redis.yaml
    {
        cat "$config/gateway.yaml"
        echo "# Added by run-fleet.sh for IMGATE_FLEET_DIRECTORY=redis (docs/configuration.md):"
        echo "directory: {mode: redis}"
        echo "redis: {unix_socket: \"$run/redis.sock\"}"
        echo "events: {enabled: true, messages: true}"
    } >"$config/$gateway_yaml.tmp" || die "cannot write $config/$gateway_yaml.tmp"
    mv -f "$config/$gateway_yaml.tmp" "$config/$gateway_yaml" ||
        die "cannot write $config/$gateway_yaml (a read-only checkout? copy config/local elsewhere and start with IMGATE_FLEET_CONFIG=DIR)"
}

cmd_run() {
    local fp m pub adm i
    if fp=$(fleet_pid); then
        die "a local fleet is already running (pid $fp; $show_self status)"
    fi
    config=$(cd "${IMGATE_FLEET_CONFIG:-$here}" && pwd) || die "no config directory"
    case "${BUILD_DIR:-build}" in
        /*) bin="${BUILD_DIR}/src" ;;
        *) bin="$root/${BUILD_DIR:-build}/src" ;;
    esac
    for m in imgate-dispatcher imgate-gateway imgate; do
        [ -x "$bin/$m" ] || die "$bin/$m is missing: run make build (or make run)"
    done
    # The gateways refuse a secret file others can read (security.md); git only keeps 0644, so
    # the dev secrets are made private to this user on every start.
    local f
    for f in "$config"/*.secret "$config"/admin.token; do
        [ -f "$f" ] && chmod 0600 "$f"
    done
    make_dev_certs
    mkdir -p "$run"
    gateway_yaml=gateway.yaml
    [ "$directory" = redis ] && make_redis_config
    # Members of an earlier fleet whose script was SIGKILLed still hold the ports.
    local stale=""
    for m in "${members[@]}"; do member_pid "$m" && stale+=" $pid"; done
    [ -z "$stale" ] || die "members of an earlier fleet still run; stop them first: kill$stale"
    rm -f "$run"/*.ready "$run"/*.pid "$run"/*.exit "$run"/*.stop-requested "$run"/*.lock
    printf 'config=%s\nbin=%s\ndirectory=%s\ngateway_yaml=%s\n' "$config" "$bin" "$directory" \
        "$gateway_yaml" >"$run/fleet.env"
    echo "$$" >"$run/fleet.pid"
    for m in "${members[@]}"; do : >"$run/$m.log"; done

    trap 'stop_fleet 0' INT TERM HUP
    trap 'stop_fleet 1' EXIT
    start_follower
    local ok=0 redis_ok=1
    if [ "$directory" = redis ]; then
        # Redis before the gateways: they would start anyway (and fall back to asking every
        # peer), but a fleet that begins with its directory up is the one worth showing.
        launch redis
        runners+=("$launched")
        wait_ready redis || redis_ok=0
    fi
    # Gateways first, so the dispatcher's first pulls find them listening.
    for m in gw1 gw2 gw3; do
        [ "$redis_ok" -eq 1 ] || break
        launch "$m"
        runners+=("$launched")
    done
    if [ "$redis_ok" -eq 1 ] && wait_ready gw1 gw2 gw3; then
        launch dispatcher
        runners+=("$launched")
        wait_ready dispatcher && ok=1
    fi
    if [ "$ok" -ne 1 ]; then
        echo "run-fleet: are the fleet's ports free (config/local: 8080-8081, 9001-9003," \
            "9101-9103, 9201-9203, 9401-9403 tls, 9501-9503 ws, 9601-9603 wss)?" >&2
        stop_fleet 1
    fi
    pub=$(json_str "$run/dispatcher.ready" public)
    adm=$(json_str "$run/dispatcher.ready" admin)

    # The dispatcher hands out a gateway once it has seen `rise` good pulls of it.
    for ((i = 0; i < 50; i++)); do
        curl -fsS -o /dev/null "http://$pub/get-tcp-ip?uid=run-fleet" 2>/dev/null && break
        sleep 0.1
    done

    # Before the tips: a member killed right after them is still reported as exited.
    for m in "${members[@]}"; do member_pid "$m" && seen_pid[$m]=$pid; done
    local secret="$config/token.secret" ca="$config/certs/ca.crt"
    local gws="" tls="" tls_tips="" t
    for m in gw1 gw2 gw3; do
        gws+="$m $(json_str "$run/$m.ready" client)   "
        t=$(transports_of "$m")
        [ -n "$t" ] && tls+="              $m$t"$'\n'
    done
    [ "$config" -ef "$here" ] && [ "$PWD" = "$root" ] && ca="config/local/certs/ca.crt"
    # The secure transports' lines only when the gateways serve them (another config may not).
    if [ -n "$tls" ]; then
        tls="  transports  tls, ws, wss; the certificate is signed by the development CA $ca
              (made by dev-certs.sh on this machine; never use it in production):"$'\n'"$tls"
        tls_tips="  $bin/imgate listen --tls --ca $ca --dispatcher http://$pub --secret-file $secret -u alice@example.com
  $bin/imgate send   --wss --ca $ca --dispatcher http://$pub --secret-file $secret -u bob --to alice@example.com \"hello over wss\""$'\n'
    fi
    local redis_tips=""
    if [ "$directory" = redis ]; then
        redis_tips="
Redis mode: the gateways record where users are in the fleet's own Redis ($show_run/redis.sock)
and append session events and messages to the stream imgate:events (docs/events.md):
  redis-cli -s $show_run/redis.sock hgetall imgate:u:bob      # bob's gateways: epoch, sessions
  redis-cli -s $show_run/redis.sock xrange imgate:events - +  # what a backend consumes
  curl -s -H \"Authorization: Bearer \$(cat $config/admin.token)\" 'http://$(json_str "$run/gw1.ready" admin)/presence?user=bob'
"
    fi
    cat <<TIPS

imgate local fleet is running:
  dispatcher  public http://$pub   admin + dashboard http://$adm/
  gateways    $gws(admin $(json_str "$run/gw1.ready" admin), $(json_str "$run/gw2.ready" admin), $(json_str "$run/gw3.ready" admin))
  logs        $show_run/<member>.log, shown below as they are written
$tls
Try, in other terminals:
  curl -s 'http://$pub/get-tcp-ip?uid=alice'
  $bin/imgate listen --secret-file $secret --user bob --room lobby
  $bin/imgate send   --secret-file $secret --user alice --to bob --wait-receipt 5s "hello bob"
  $bin/imgate send   --secret-file $secret --user alice --room lobby "hello room"
  $bin/imgate push   --admin $(json_str "$run/gw2.ready" admin) --admin-token-file $config/admin.token --user bob "from the backend"
  $bin/imgate chat   --secret-file $secret --user carol --to bob      # each line typed is sent
$tls_tips  $bin/imgate load   --secret-file $secret --clients 200 --rate 500 --duration 5s
  open http://$adm/ for the fleet dashboard;  curl -s http://$adm/status

Kill a gateway and watch the dispatcher route around it (the rest keeps running):
  kill -9 \$(cat $show_run/gw2.pid)     # the dashboard shows gw2 down within a second
  curl -s 'http://$pub/get-tcp-ip?uid=alice'   # gw2 is no longer handed out
  $show_self restart gw2   # back; also: stop gw2, status

$redis_tips
Ctrl-C stops all ${#members[@]} processes.
TIPS

    # Until Ctrl-C, SIGTERM or SIGHUP (the traps above end the script): report exits and restarts.
    while :; do
        check_members
        sleep 0.2 &
        tick=$!
        wait "$tick"
        tick=""
    done
}

case "${1:-}" in
    "") cmd_run ;;
    status) cmd_status ;;
    stop | restart)
        [ $# -eq 2 ] && is_member "$2" || die "usage: $0 $1 gw1|gw2|gw3|dispatcher"
        "cmd_$1" "$2" ;;
    __member) member_main "$2" ;;
    *) die "usage: $0 [status | stop MEMBER | restart MEMBER]  (MEMBER: gw1 gw2 gw3 dispatcher)" ;;
esac
