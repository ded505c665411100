#!/usr/bin/env bash
# start-slurm.sh - a real single-node SLURM cluster for the project's cluster test.
#
# Debian 12, root, no systemd needed: munged + slurmctld + slurmd, and by default slurmdbd
# on a local MariaDB so that `sacct` works (the Snakemake slurm executor polls job states
# with sacct by default). Missing Debian packages are installed with apt-get.
#
# Usage:
#   tests/slurm/start-slurm.sh [--no-accounting] [CONFDIR]   start (or check) the cluster
#   tests/slurm/start-slurm.sh --stop [CONFDIR]              stop what this script started
#   tests/slurm/start-slurm.sh --status [CONFDIR]            exit 0 if the node is usable
#
#   CONFDIR defaults to $SLURM_LOCAL_DIR or /tmp/vq-materializer-slurm. It holds slurm.conf,
#   slurmdbd.conf, state/, log/ and run/ (pid files and "started" markers).
#   /etc/slurm/slurm.conf (and slurmdbd.conf) become symlinks to it, so sinfo, sbatch, sacct
#   and snakemake need no SLURM_CONF; --stop removes those symlinks again. One cluster per
#   machine.
#
#   --no-accounting  no slurmdbd/MariaDB. sacct then fails, so Snakemake must poll with
#                    --slurm-status-command squeue (needs MinJobAge >= 3 x
#                    --slurm-init-seconds-before-status-checks; MinJobAge here is 300 s).
#
# Idempotent: installs only missing packages, starts only daemons that are not running,
# restarts the slurm daemons only when the generated config changed. Exits 0 once `sinfo`
# shows the node idle. --stop only stops daemons whose pid files this script owns, and
# MariaDB/munged only if it started them.
# Adapted from ../shared/slurm-local/start-slurm.sh (see its NOTES.md); the project keeps
# its own copy so that nothing depends on ../shared at run time.
set -euo pipefail

ACCOUNTING=1
MODE=start
CONFDIR=${SLURM_LOCAL_DIR:-/tmp/vq-materializer-slurm}
for a in "$@"; do
  case "$a" in
    --no-accounting) ACCOUNTING=0 ;;
    --stop) MODE=stop ;;
    --status) MODE=status ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    -*) echo "unknown option: $a" >&2; exit 2 ;;
    *) CONFDIR=$a ;;
  esac
done
NODE=$(hostname -s)
log() { echo "[start-slurm] $*"; }

if [ "$MODE" = status ]; then
  command -v sinfo >/dev/null || { echo "no SLURM client installed"; exit 1; }
  state=$(timeout 20 sinfo -h -o %T 2>/dev/null | head -1) || true
  case "$state" in idle|mixed|allocated|completing) echo "up: $state"; exit 0 ;; esac
  echo "down${state:+: $state}"; exit 1
fi

[ "$(id -u)" = 0 ] || { echo "start-slurm.sh must run as root" >&2; exit 1; }
mkdir -p "$CONFDIR"
CONFDIR=$(cd "$CONFDIR" && pwd)
RUN=$CONFDIR/run LOG=$CONFDIR/log STATE=$CONFDIR/state
DB_PASS=vq-slurm-local   # local-only MariaDB user, reachable on 127.0.0.1 / unix socket only

# pid_alive PIDFILE COMM -> 0 if the pid in PIDFILE runs a process named COMM
pid_alive() {
  local f=$1 comm=$2 p
  [ -s "$f" ] || return 1
  p=$(cat "$f" 2>/dev/null) || return 1
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && [ "$(ps -p "$p" -o comm= 2>/dev/null)" = "$comm" ]
}
# stop_pid PIDFILE COMM -> SIGTERM that pid (only if it runs COMM), wait up to 20 s, then SIGKILL
stop_pid() {
  local f=$1 comm=$2 p i
  if pid_alive "$f" "$comm"; then
    p=$(cat "$f"); log "stopping $comm (pid $p)"; kill "$p"
    for i in $(seq 80); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$p" 2>/dev/null; then log "$comm did not stop, SIGKILL"; kill -9 "$p"; fi
  fi
  rm -f "$f"
}
stop_slurm_daemons() {
  stop_pid "$RUN/slurmd.pid" slurmd
  stop_pid "$RUN/slurmctld.pid" slurmctld
  stop_pid "$RUN/slurmdbd.pid" slurmdbd
}
# drop /etc/slurm symlinks into CONFDIR (restoring a config that was there before)
unlink_confs() {
  local f
  for f in slurm.conf slurmdbd.conf; do
    if [ -L "/etc/slurm/$f" ] && [ "$(readlink "/etc/slurm/$f")" = "$CONFDIR/$f" ]; then
      rm -f "/etc/slurm/$f"
      if [ -e "/etc/slurm/$f.orig" ]; then mv "/etc/slurm/$f.orig" "/etc/slurm/$f"; fi
    fi
  done
}

if [ "$MODE" = stop ]; then
  stop_slurm_daemons
  if [ -f "$RUN/mariadb.started" ]; then stop_pid /run/mysqld/mysqld.pid mariadbd; rm -f "$RUN/mariadb.started"; fi
  if [ -f "$RUN/munged.started" ]; then stop_pid /run/munge/munged.pid munged; rm -f "$RUN/munged.started"; fi
  unlink_confs
  log "stopped"; exit 0
fi

T0=$(date +%s.%N)
# ---------------------------------------------------------------- 1. packages
PKGS=(munge slurmctld slurmd slurm-client)
if [ "$ACCOUNTING" = 1 ]; then PKGS+=(slurmdbd mariadb-server); fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "missing ${missing[*]} and no apt-get: install them first" >&2; exit 1; }
  log "installing: ${missing[*]}"
  # keep package postinsts from starting services (there may be no init system)
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
  fi
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# ---------------------------------------------------------------- 2. munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating munge key"
  mungekey --create --keyfile=/etc/munge/munge.key --force
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge; chmod 0755 /run/munge
mkdir -p "$RUN" "$LOG" "$STATE/ctld" "$STATE/d"
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged
  touch "$RUN/munged.started"
  for _ in $(seq 40); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
fi
munge -n | unmunge >/dev/null

# ---------------------------------------------------------------- 3. configs
MEM_MB=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
REAL_MEM=$(( MEM_MB * 9 / 10 ))      # a bit below what slurmd detects
if [ "$ACCOUNTING" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
new_conf=$(cat <<EOF
# generated by tests/slurm/start-slurm.sh - single-node local cluster
ClusterName=localcluster
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
CommunicationParameters=NoInAddrAny
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
MailProg=/bin/true
# no cgroups: plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
# memory is not consumable: with CR_Core_Memory a job without --mem takes the whole node
SelectTypeParameters=CR_Core
$ACCT
JobCompType=jobcomp/none
# finished jobs stay visible to squeue/scontrol for 5 min (squeue status polling relies on it)
MinJobAge=300
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$REAL_MEM State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)
changed=0
if [ ! -f "$CONFDIR/slurm.conf" ] || [ "$(cat "$CONFDIR/slurm.conf")" != "$new_conf" ]; then
  printf '%s\n' "$new_conf" > "$CONFDIR/slurm.conf"; changed=1
fi
if [ "$ACCOUNTING" = 1 ]; then
  new_dbd=$(cat <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
)
  if [ ! -f "$CONFDIR/slurmdbd.conf" ] || [ "$(cat "$CONFDIR/slurmdbd.conf")" != "$new_dbd" ]; then
    printf '%s\n' "$new_dbd" > "$CONFDIR/slurmdbd.conf"; changed=1
  fi
  chmod 0600 "$CONFDIR/slurmdbd.conf"   # slurmdbd refuses a world-readable config
fi
mkdir -p /etc/slurm
for f in slurm.conf slurmdbd.conf; do
  if [ "$f" = slurmdbd.conf ] && [ "$ACCOUNTING" = 0 ]; then continue; fi
  if [ -e "/etc/slurm/$f" ] && [ ! -L "/etc/slurm/$f" ]; then mv "/etc/slurm/$f" "/etc/slurm/$f.orig"; fi
  ln -sfn "$CONFDIR/$f" "/etc/slurm/$f"
done
if [ "$changed" = 1 ]; then
  log "config written to $CONFDIR"
  stop_slurm_daemons      # no-op on a first start; a restart with the new config otherwise
  if [ "$ACCOUNTING" = 0 ] && [ -L /etc/slurm/slurmdbd.conf ]; then rm -f /etc/slurm/slurmdbd.conf; fi
fi

# ---------------------------------------------------------------- 4. accounting (MariaDB + slurmdbd)
if [ "$ACCOUNTING" = 1 ]; then
  if ! mariadb-admin ping >/dev/null 2>&1; then
    log "starting MariaDB"
    mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
      --pid-file=/run/mysqld/mysqld.pid --innodb-lock-wait-timeout=900 \
      >"$LOG/mariadb.log" 2>&1 </dev/null &
    touch "$RUN/mariadb.started"
    for _ in $(seq 120); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.25; done
    mariadb-admin ping >/dev/null
  fi
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  if ! pid_alive "$RUN/slurmdbd.pid" slurmdbd; then
    log "starting slurmdbd"
    /usr/sbin/slurmdbd      # reads /etc/slurm/slurmdbd.conf (the symlink); daemonizes
    for _ in $(seq 120); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.25; done
    sacctmgr -n list cluster >/dev/null || { tail -20 "$LOG/slurmdbd.log" >&2; exit 1; }
  fi
fi

# ---------------------------------------------------------------- 5. slurmctld + slurmd
if ! pid_alive "$RUN/slurmctld.pid" slurmctld; then
  log "starting slurmctld"
  /usr/sbin/slurmctld
fi
for _ in $(seq 120); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.25; done
scontrol ping | grep -q 'is UP' || { tail -20 "$LOG/slurmctld.log" >&2; exit 1; }
if ! pid_alive "$RUN/slurmd.pid" slurmd; then
  log "starting slurmd"
  /usr/sbin/slurmd -N "$NODE"
fi

# ---------------------------------------------------------------- 6. wait for the node
state=""
for _ in $(seq 240); do
  state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1)
  case "$state" in
    idle|mixed|allocated) break ;;
    down*|drain*|fail*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
  esac
  sleep 0.25
done
case "$state" in
  idle|mixed|allocated) ;;
  *) echo "node $NODE not ready (state '$state')" >&2; tail -20 "$LOG/slurmd.log" >&2; exit 1 ;;
esac
if [ "$ACCOUNTING" = 1 ]; then
  # the cluster registers itself in slurmdbd when slurmctld starts; wait so sacct sees it
  for _ in $(seq 120); do
    sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx localcluster && break; sleep 0.25
  done
fi
log "cluster up in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')s:" \
  "node $NODE $state, accounting=$ACCOUNTING, config $CONFDIR/slurm.conf"
sinfo
