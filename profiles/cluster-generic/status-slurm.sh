#!/usr/bin/env bash
# status-slurm.sh JOBID -> prints running, success or failed (the cluster-generic protocol).
# Asks sacct when SLURM accounting is on, else squeue (finished jobs stay visible to squeue
# for MinJobAge seconds, 300 by default). Adapt the two queries for another scheduler.
jobid=$1
state=$(sacct -X -n -P -j "$jobid" -o State 2>/dev/null | head -1)
[ -n "$state" ] || state=$(squeue -h -j "$jobid" --states=all -o %T 2>/dev/null | head -1)
case "${state%% *}" in
  COMPLETED) echo success ;;
  FAILED | CANCELLED* | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED) echo failed ;;
  "") echo failed ;;  # unknown to both: older than MinJobAge without accounting, or purged
  *) echo running ;;  # PENDING, RUNNING, COMPLETING, CONFIGURING, REQUEUED, SUSPENDED, ...
esac
