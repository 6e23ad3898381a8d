# shellcheck shell=bash
# Sourced by the set-up scripts (run as root, with a `log` function): apt_install PACKAGE...
#
# Installs Debian packages without letting their scripts start services (there is no systemd;
# the set-up scripts start the daemons themselves): a policy-rc.d that refuses every start
# stands while apt-get runs, unless one was there already. A failed install is tried once
# more after `apt-get update`.
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    local policy_created=0 rc=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    apt-get install -y --no-install-recommends "$@" || {
        log "install failed; running apt-get update and trying again"
        apt-get update && apt-get install -y --no-install-recommends "$@"
    } || rc=$?
    if [ "$policy_created" -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    return "$rc"
}
