#!/bin/sh
# An example consumer of imgate's upstream events (docs/events.md): reads the stream with a
# consumer group, prints one JSON object per event on stdout, and acknowledges what it printed.
# Needs redis-cli (7.x, for --json) and jq.
#
#   REDIS_HOST=127.0.0.1 REDIS_PORT=6379 STREAM=imgate:events GROUP=history CONSUMER=c1 \
#       ./events-consumer.sh
#
# Each line is {"stream_id":"<entry id>","type":"login",...}: the entry's id, then every field
# of the entry as a JSON string (redis-cli --json). Text (UTF-8) comes through exactly, quotes, backslashes, NULs
# and newlines included; bytes of a payload that are not UTF-8 are replaced by U+FFFD (jq), so a
# backend whose payloads are binary reads them with a Redis client library instead (the
# entries hold the raw bytes). ONCE=1 exits after the first read that finds nothing new.
# REDIS_AUTH (optional) is passed to redis-cli as its password (REDISCLI_AUTH).
set -eu

REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
STREAM=${STREAM:-imgate:events}
GROUP=${GROUP:-imgate-example}
CONSUMER=${CONSUMER:-$(hostname)-$$}
BLOCK_MS=${BLOCK_MS:-5000}
COUNT=${COUNT:-100}
ONCE=${ONCE:-0}
if [ -n "${REDIS_AUTH:-}" ]; then
    REDISCLI_AUTH=$REDIS_AUTH
    export REDISCLI_AUTH
fi

cli() {
    redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"
}

# The group starts at the beginning of the stream ("0") the first time; later runs resume
# where the group left off. BUSYGROUP: it exists already.
if ! out=$(cli XGROUP CREATE "$STREAM" "$GROUP" 0 MKSTREAM 2>&1); then
    echo "XGROUP CREATE failed: $out" >&2
    exit 1
fi
case $out in
    OK | BUSYGROUP*) ;;
    *)
        echo "XGROUP CREATE failed: $out" >&2
        exit 1
        ;;
esac

# Entries read but not acknowledged by an earlier run of this consumer come first ("0"), then
# new ones (">"). A consumer that died keeps its pending entries; see XAUTOCLAIM in
# docs/events.md to take them over from another consumer.
from=0
while :; do
    # RESP2 shape: [[stream, [[id, [field, value, ...]], ...]]], or null after BLOCK_MS.
    reply=$(cli -2 --json XREADGROUP GROUP "$GROUP" "$CONSUMER" COUNT "$COUNT" \
        BLOCK "$BLOCK_MS" STREAMS "$STREAM" "$from")
    entries=$(printf '%s\n' "$reply" | jq -c 'if . == null then [] else .[0][1] end')
    if [ "$entries" = "[]" ]; then
        if [ "$from" = 0 ]; then
            from='>'
            continue
        fi
        [ "$ONCE" = 1 ] && exit 0
        continue
    fi
    # One JSON object per entry: its stream id (stream_id: "id" is a field of messages), then
    # its fields.
    printf '%s\n' "$entries" | jq -c '.[] | .[1] as $f
        | {stream_id: .[0]} + ([range(0; $f | length; 2) as $i | {($f[$i]): $f[$i + 1]}] | add)'
    # Acknowledged only after printing: a consumer killed in between sees them again (at least
    # once, like the gateway's XADDs).
    # shellcheck disable=SC2046 # one argument per id, ids never contain spaces
    cli XACK "$STREAM" "$GROUP" $(printf '%s\n' "$entries" | jq -r '.[][0]') >/dev/null
done
