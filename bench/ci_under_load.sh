#!/usr/bin/env bash
# Fresh-clone CI runs in a row beside bench/busy_machine.py (two CPU hogs and an airflow standalone doing real work):
# the check that the suite does not depend on an idle machine. Stops at the first failing run.
#
#   bash bench/ci_under_load.sh [RUNS]        # from a checkout where `make install` ran; RUNS defaults to 3
#
# Each run clones the current commit of this checkout into /tmp/ci-under-load-<n>, runs `CI=true bash .ci/run` there
# and prints one line: its number, exit code, seconds and pytest's last line. About 60 min per run on 2 cores.
set -u
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
COMMIT="$(git rev-parse HEAD)"
.venv/bin/python bench/busy_machine.py --minutes $((RUNS * 90)) > /tmp/ci-under-load-busy.log 2>&1 &
BUSY=$!
stop_load() {  # SIGTERM makes busy_machine.py stop its Airflow and hogs; wait for that, then make sure
  kill "$BUSY" 2>/dev/null
  for _ in $(seq 1 60); do kill -0 "$BUSY" 2>/dev/null || break; sleep 1; done
  kill -9 "$BUSY" 2>/dev/null
}
trap stop_load EXIT
sleep 60  # the load's own Airflow is up and working before the first run starts
echo "commit $COMMIT, $RUNS runs under load"
for n in $(seq 1 "$RUNS"); do
  dir="/tmp/ci-under-load-$n"
  rm -rf "$dir" && git clone -q . "$dir" && git -C "$dir" checkout -q "$COMMIT"
  start=$(date +%s)
  (cd "$dir" && CI=true bash .ci/run) > "$dir.log" 2>&1
  code=$?
  echo "run $n: exit $code in $(( $(date +%s) - start )) s; load $(cut -d' ' -f1-3 /proc/loadavg); $(grep -E '[0-9]+ (passed|failed)' "$dir.log" | tail -1)"
  [ "$code" -ne 0 ] && exit "$code"
done
