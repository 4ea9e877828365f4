#!/bin/sh
# A cron job that must run on one machine at a time, wrapped in `wirelock run`.
#
# Every host gets the same crontab line; the lock decides which one runs the job each time:
#
#   */15 * * * *  REDIS_URL=redis://redis.internal:6379 /opt/app/examples/cron-job.sh >>/var/log/report.log 2>&1
#
# --wait 0   one attempt: if another host is at it, wirelock exits 75 at once and this run is
#            skipped (exit 0 here, so cron sends no mail).
# --ttl 30s  if this host dies mid-job, the others are kept out for 30 s at most; while the job runs,
#            wirelock keeps the lock alive. If the lock is lost anyway, wirelock stops the job
#            (SIGTERM, then SIGKILL after --grace) and exits 76.
# A password goes in the URL or in WIRELOCK_REDIS_PASSWORD; wirelock never prints it. For etcd, use
# --etcd http://host:2379 instead of --redis: `etcdctl lock nightly-report` then excludes it too.
#
# Run it locally, from a clone of the repository (npm ci done):
#   redis-server --port 6390 --save '' --daemonize yes
#   REDIS_URL=redis://127.0.0.1:6390 sh examples/cron-job.sh
#   # two at once: one runs, the other skips
#   REDIS_URL=redis://127.0.0.1:6390 sh -c 'sh examples/cron-job.sh & sh examples/cron-job.sh; wait'
#   redis-cli -p 6390 shutdown nosave

set -u
: "${REDIS_URL:=redis://127.0.0.1:6379}"
# How long the stand-in job runs.
JOB_SECONDS=${JOB_SECONDS:-3}
export JOB_SECONDS

# The installed command if there is one (npm i -g wirelock, or an npx bin dir on PATH); otherwise the
# repository's own source through tsx. $WIRELOCK overrides both.
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${WIRELOCK:-}" ]; then
  if command -v wirelock >/dev/null 2>&1; then
    WIRELOCK=wirelock
  else
    WIRELOCK="node --import $here/../node_modules/tsx/dist/loader.mjs $here/../src/cli/main.ts"
  fi
fi

# The job. WIRELOCK_FENCE grows with every run that gets the lock: pass it to what the job writes,
# so that whatever it writes to can refuse a late write from a run that lost the lock.
job='echo "$(date +%T) report: running on $(hostname) with fence $WIRELOCK_FENCE"; sleep "$JOB_SECONDS"; echo "$(date +%T) report: done"'

$WIRELOCK run --redis "$REDIS_URL" --key nightly-report --wait 0 --ttl 30s --grace 10s -- sh -c "$job"
status=$?
case $status in
  0) ;;
  75) echo "$(date +%T) report: skipped, another host holds the lock"; status=0 ;;
  76) echo "$(date +%T) report: the lock was lost while the job ran, so it was stopped" >&2 ;;
  69) echo "$(date +%T) report: the lock server could not be reached" >&2 ;;
esac
exit $status
