#!/usr/bin/env bash
# Runs pytest on the given tests under faketime (the shifted clock). Airflow's in-process dag.test()
# supervisor sometimes hangs under libfaketime (measured 2026-12-02: 2 of 5 CI runs; a thread waits forever
# in Thread.start while the execution API's event loop spins at 100% CPU; -m does not prevent it, and
# pytest-timeout's alarm never fires under it). So each attempt has a time limit, and only a run that HUNG
# (timeout's exit 124) is tried again, at most ATTEMPTS times: a test that fails fails at once.
# Usage: tests/tools/shifted.sh SHIFT LIMIT_SECONDS ATTEMPTS PYTEST [pytest args...]
set -uo pipefail
shift_by=$1 limit=$2 attempts=$3 pytest=$4
shift 4
for attempt in $(seq 1 "$attempts"); do
  timeout --kill-after=10 "$limit" faketime -m "$shift_by" "$pytest" "$@"
  rc=$?
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] && exit "$rc"
  echo "shifted-clock run hung (attempt $attempt of $attempts, stopped after ${limit}s): the known" \
       "libfaketime + Airflow in-process supervisor hang; trying again"
done
echo "shifted-clock run hung $attempts times"
exit 124
