#!/bin/sh
# One job of the fault campaign: it records each of its runs, starts a child that must not
# outlive it, works for a while and exits with the code asked for.
#
#   sh job.sh RUNS SECONDS [EXIT_CODE [RERUN_SECONDS]]
#
# RUNS gets "JOB_ID PID start TIME NETNS" and "JOB_ID PID end TIME" lines (one write each, so
# lines from concurrent jobs never mix). RERUN_SECONDS replaces SECONDS when the job ran before.
runs=$1 seconds=$2 code=${3:-0}
if [ -n "$4" ] && grep -q "^$GLOWLAB_JOB_ID " "$runs" 2>/dev/null; then
    seconds=$4
fi
echo "$GLOWLAB_JOB_ID $$ start $(date +%s.%N) $(readlink /proc/$$/ns/net)" >> "$runs"
sleep 3600 >/dev/null 2>&1 &
sleep "$seconds"
echo "$GLOWLAB_JOB_ID $$ end $(date +%s.%N)" >> "$runs"
exit "$code"
