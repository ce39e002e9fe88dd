#!/usr/bin/env bash
# tether.sh PARENT_PID COMMAND...
# Runs COMMAND and stops it when PARENT_PID goes away, so a test runner that is
# killed outright still leaves no etcd, apiserver or Elasticsearch behind.
set -u
parent=$1; shift
"$@" &
child=$!
stop() {
  kill -TERM "$child" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$child" 2>/dev/null || exit 0; sleep 0.1; done
  kill -KILL "$child" 2>/dev/null
  exit 0
}
trap stop TERM INT HUP
# /proc, not kill -0: a tether running as another user may not signal its parent.
while [ -d "/proc/$parent" ] && kill -0 "$child" 2>/dev/null; do
  sleep 1 & wait $!
done
if kill -0 "$child" 2>/dev/null; then stop; fi
wait "$child"
