#!/usr/bin/env bash
# Installs and starts a single-node Slurm (slurmctld + slurmd + munge) on Debian 12, for the
# agent's end-to-end tests. Run as root. Idempotent: when everything already runs it only
# verifies that the node is usable.
#
# No systemd is assumed: the daemons are started directly. Accounting is off
# (AccountingStorageType=accounting_storage/none), so `sacct` reports nothing; the agent
# recognises finished jobs by their absence from `squeue` plus the exit-code file that its
# rendered batch script writes (see crates/agent/src/batch/mod.rs).
#
# Usage: sudo bash scripts/setup-slurm.sh
# Environment: SLURM_WAIT_SECONDS (default 60) – how long to wait for the node to be idle.
set -euo pipefail

WAIT_SECONDS="${SLURM_WAIT_SECONDS:-60}"
CONF=/etc/slurm/slurm.conf
MARK="# managed by hpcsera scripts/setup-slurm.sh"

log() { printf '[setup-slurm] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

[ "$(id -u)" -eq 0 ] || die "must run as root"

# --- 1. packages -----------------------------------------------------------------------------
need_install=0
for bin in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch /usr/sbin/munged; do
    [ -x "$bin" ] || need_install=1
done
if [ "$need_install" -eq 1 ]; then
    log "installing slurmctld slurmd slurm-client munge"
    # Without systemd, package scripts must not try to start services; we start them below.
    apt_install slurmctld slurmd slurm-client munge
else
    log "packages already installed"
fi

HOST="$(hostname -s)"
CPUS="$(nproc)"

# --- 2. munge --------------------------------------------------------------------------------
id munge >/dev/null 2>&1 || die "user munge does not exist (munge package broken?)"
if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    install -d -o munge -g munge -m 700 /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if munge_ok; then
    log "munged already running"
else
    log "starting munged as user munge"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 1 20); do munge_ok && break; sleep 0.5; done
    munge_ok || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# --- 3. slurm.conf ---------------------------------------------------------------------------
id slurm >/dev/null 2>&1 || die "user slurm does not exist (slurm packages broken?)"
install -d -o slurm -g slurm -m 755 /var/lib/slurm /var/lib/slurm/slurmctld /var/log/slurm
install -d -o root -g root -m 755 /var/lib/slurm/slurmd
install -d -m 755 /etc/slurm

# A bit under the memory that is free now, in MB (slurmd drains a node that has less than
# its configured RealMemory).
avail_kb="$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
REALMEM=$(( avail_kb / 1024 * 9 / 10 ))
[ "$REALMEM" -ge 256 ] || REALMEM=256

# Schedule batch jobs as they arrive and as others end, not in 3-second batches (Slurm's default
# batch_sched_delay=3): on this one node a job array's tasks then start about every second
# instead of every 3 s, which the CI's Slurm tests and the sweep benchmark both wait on.
SCHED_PARAMS="batch_sched_delay=0"

write_conf() {
    cat >"$CONF.tmp" <<EOF
$MARK
ClusterName=hpcsera
SlurmctldHost=$HOST
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=$SCHED_PARAMS
ReturnToService=2
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
NodeName=$HOST CPUs=$CPUS RealMemory=$REALMEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    chmod 644 "$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
}

conf_changed=0
if [ -f "$CONF" ] && grep -qxF "$MARK" "$CONF" \
    && grep -q "^SlurmctldHost=$HOST\$" "$CONF" \
    && grep -q "^NodeName=$HOST CPUs=$CPUS " "$CONF" \
    && grep -qxF "SchedulerParameters=$SCHED_PARAMS" "$CONF"; then
    log "$CONF already written for $HOST ($CPUS CPUs); keeping it"
else
    if [ -f "$CONF" ] && ! grep -qxF "$MARK" "$CONF"; then
        cp "$CONF" "$CONF.before-hpcsera"
        log "saved the existing $CONF as $CONF.before-hpcsera"
    fi
    log "writing $CONF (node $HOST, $CPUS CPUs, RealMemory=$REALMEM MB)"
    write_conf
    conf_changed=1
fi

# --- 4. daemons ------------------------------------------------------------------------------
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ "$conf_changed" -eq 1 ]; then
    # A new config: running daemons (of an older config) must be restarted, by their pid files.
    for pf in /run/slurmd.pid /run/slurmctld.pid; do
        if pid_alive "$pf"; then
            log "stopping the daemon of $pf to apply the new config"
            kill "$(cat "$pf")"
            for _ in $(seq 1 20); do pid_alive "$pf" || break; sleep 0.5; done
        fi
    done
fi

if pid_alive /run/slurmctld.pid; then
    log "slurmctld already running"
else
    log "starting slurmctld"
    /usr/sbin/slurmctld
fi
ctld_ok=0
for _ in $(seq 1 30); do
    if scontrol ping 2>/dev/null | grep -q 'UP'; then ctld_ok=1; break; fi
    sleep 1
done
[ "$ctld_ok" -eq 1 ] || die "slurmctld does not answer (see /var/log/slurm/slurmctld.log)"

if pid_alive /run/slurmd.pid; then
    log "slurmd already running"
else
    log "starting slurmd"
    /usr/sbin/slurmd
fi

# --- 5. wait for the node --------------------------------------------------------------------
start=$(date +%s)
resumed=0
while :; do
    state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n1 || true)"
    elapsed=$(( $(date +%s) - start ))
    case "$state" in
        idle|mixed|allocated|completing)
            log "node $HOST is $state after ${elapsed}s"
            break ;;
        down*|drain*|drained*|fail*)
            if [ "$resumed" -lt 3 ]; then
                log "node $HOST is $state; resuming it"
                scontrol update nodename="$HOST" state=resume || true
                resumed=$((resumed + 1))
            fi ;;
    esac
    if [ "$elapsed" -ge "$WAIT_SECONDS" ]; then
        sinfo -N -l >&2 || true
        scontrol show node "$HOST" >&2 || true
        die "node $HOST is still '${state:-unknown}' after ${WAIT_SECONDS}s (see /var/log/slurm/)"
    fi
    log "waiting for node $HOST (state: ${state:-unknown}, ${elapsed}s)"
    sleep 2
done

log "Slurm is ready: $(sinfo -h -o '%P %a %D %T' | head -n1)"
