#!/usr/bin/env bash
# Fresh-clone CI runs in a row beside bench/busy_machine.py (two CPU hogs and an airflow standalone doing real work):
# the check that the suite does not depend on an idle machine. Stops at the first failing run.
#
#   bash bench/ci_under_load.sh [RUNS]        # from a checkout where `make install` ran; RUNS defaults to 3
#
# The load runs with that checkout's .venv (or $PYTHON). The script refuses to start without it, waits until the
# load's Airflow is up and working, and fails (exit 3) if the load dies or finishes no load run during a CI run:
# a run without load proves nothing.
#
# Each run clones the current commit of this checkout into /tmp/ci-under-load-<n>, runs `CI=true bash .ci/run` there
# and prints one line: its number, exit code, seconds and pytest's last line. About 60 min per run on 2 cores.
set -u
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
COMMIT="$(git rev-parse HEAD)"
PYTHON="${PYTHON:-.venv/bin/python}"
LOAD_LOG=/tmp/ci-under-load-busy.log
[ -x "$PYTHON" ] || { echo "no $PYTHON here: run \`make install\` in this checkout or set PYTHON" >&2; exit 2; }
"$PYTHON" bench/busy_machine.py --minutes $((RUNS * 90)) > "$LOAD_LOG" 2>&1 &
BUSY=$!
load_alive() {  # the load process runs and its Airflow is up with the load DAG triggered
  kill -0 "$BUSY" 2>/dev/null && grep -q '^busy machine: ' "$LOAD_LOG"
}
load_runs() { grep -c '^load run ' "$LOAD_LOG"; }
stop_load() {  # SIGTERM makes busy_machine.py stop its Airflow and hogs; wait for that, then make sure
  kill "$BUSY" 2>/dev/null
  for _ in $(seq 1 60); do kill -0 "$BUSY" 2>/dev/null || break; sleep 1; done
  kill -9 "$BUSY" 2>/dev/null
}
trap stop_load EXIT
for _ in $(seq 1 600); do load_alive && break; kill -0 "$BUSY" 2>/dev/null || break; sleep 1; done
load_alive || { echo "the load did not start (see $LOAD_LOG):" >&2; tail -5 "$LOAD_LOG" >&2; exit 3; }
echo "commit $COMMIT, $RUNS runs under load"
for n in $(seq 1 "$RUNS"); do
  dir="/tmp/ci-under-load-$n"
  rm -rf "$dir" && git clone -q . "$dir" && git -C "$dir" checkout -q "$COMMIT"
  start=$(date +%s)
  runs_before=$(load_runs)
  (cd "$dir" && CI=true bash .ci/run) > "$dir.log" 2>&1
  code=$?
  echo "run $n: exit $code in $(( $(date +%s) - start )) s; load $(cut -d' ' -f1-3 /proc/loadavg); $(load_runs) load runs so far; $(grep -E '[0-9]+ (passed|failed)' "$dir.log" | tail -1)"
  if ! kill -0 "$BUSY" 2>/dev/null || [ "$(load_runs)" -le "$runs_before" ]; then
    echo "the load died or did no work during run $n (see $LOAD_LOG): not a loaded run" >&2; exit 3
  fi
  [ "$code" -ne 0 ] && exit "$code"
done
