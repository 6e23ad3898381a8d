#!/usr/bin/env bash
# Prepares slurmrestd (Slurm's REST daemon) for the benchmark harness (scripts/bench.sh), on the
# single-node Slurm of scripts/setup-slurm.sh. Run as root. Idempotent, and it never leaves the
# cluster down: slurmctld is restarted only when slurm.conf had to change (JWT is new), and the
# script waits until it answers again.
#
# What it does:
#   1. installs Debian's `slurmrestd` and `slurm-wlm-jwt-plugin` (no service is started);
#   2. makes a 32-byte JWT key owned by the slurm user (0600) in StateSaveLocation;
#   3. adds `AuthAltTypes=auth/jwt` and `AuthAltParameters=jwt_key=…` to slurm.conf and restarts
#      slurmctld (plus `scontrol reconfigure` for slurmd) when they were missing;
#   4. makes the unprivileged user that runs slurmrestd and owns the benchmark's Slurm jobs
#      (slurmrestd refuses to run as root), `hpcsera-bench` unless BENCH_SLURM_USER says otherwise.
#
# Usage: sudo bash scripts/setup-slurmrestd.sh
set -euo pipefail

CONF=/etc/slurm/slurm.conf
KEY=/var/lib/slurm/slurmctld/jwt_hs256.key
USER_NAME="${BENCH_SLURM_USER:-hpcsera-bench}"

log() { printf '[setup-slurmrestd] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

[ "$(id -u)" -eq 0 ] || die "must run as root"
[ -f "$CONF" ] || die "$CONF is missing: run scripts/setup-slurm.sh first"

# --- 1. packages -----------------------------------------------------------------------------
if [ ! -x /usr/sbin/slurmrestd ] || [ ! -e /usr/lib/x86_64-linux-gnu/slurm-wlm/auth_jwt.so ]; then
    log "installing slurmrestd slurm-wlm-jwt-plugin"
    apt_install slurmrestd slurm-wlm-jwt-plugin
else
    log "slurmrestd and the JWT plugin are installed"
fi

# --- 2. the JWT key --------------------------------------------------------------------------
if [ ! -s "$KEY" ]; then
    log "creating $KEY"
    install -d -o slurm -g slurm -m 755 "$(dirname "$KEY")"
    (umask 077; dd if=/dev/urandom of="$KEY" bs=32 count=1 status=none)
fi
chown slurm:slurm "$KEY"
chmod 600 "$KEY"

# --- 3. slurm.conf ---------------------------------------------------------------------------
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if grep -q '^AuthAltTypes=auth/jwt$' "$CONF" && grep -qF "AuthAltParameters=jwt_key=$KEY" "$CONF"; then
    log "slurm.conf already has JWT"
else
    log "adding JWT to $CONF and restarting slurmctld"
    sed -i -e '/^AuthAltTypes=/d' -e '/^AuthAltParameters=/d' "$CONF"
    printf 'AuthAltTypes=auth/jwt\nAuthAltParameters=jwt_key=%s\n' "$KEY" >>"$CONF"
    if pid_alive /run/slurmctld.pid; then
        kill "$(cat /run/slurmctld.pid)"
        for _ in $(seq 1 40); do pid_alive /run/slurmctld.pid || break; sleep 0.25; done
    fi
    /usr/sbin/slurmctld
    for _ in $(seq 1 60); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.5; done
    scontrol ping | grep -q UP || die "slurmctld does not answer after the restart"
    scontrol reconfigure || true
fi

# --- 4. the unprivileged user ----------------------------------------------------------------
if ! id "$USER_NAME" >/dev/null 2>&1; then
    log "creating user $USER_NAME"
    useradd --system --create-home --shell /usr/sbin/nologin "$USER_NAME"
fi
scontrol token username="$USER_NAME" lifespan=60 >/dev/null || die "scontrol token fails: JWT is not active"
log "slurmrestd is ready to run as $USER_NAME with rest_auth/jwt"
