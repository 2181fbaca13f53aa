#!/usr/bin/env bash
# A one-machine Slurm cluster (munge + slurmctld + slurmd), as root, without systemd.
#
#   scripts/slurm_single_node.sh start DIR   install slurm-wlm and munge if missing (apt-get),
#                                            write DIR/slurm.conf, start the daemons; prints
#                                            "SLURM_CONF=DIR/slurm.conf" (export it for
#                                            sbatch, squeue and a hybatch server using a
#                                            cluster = "slurm" VM size)
#   scripts/slurm_single_node.sh stop DIR    stop the daemons started for DIR
#
# Everything lives in DIR (config, state, spool, logs, munge socket), with free TCP ports, so
# several such clusters (parallel test runs) do not collide. Process tracking is
# proctrack/linuxproc and there is no task plugin: no cgroups or systemd needed. Measured here:
# installing the two packages takes about 11 s (plus ~3 s for apt-get update).
set -euo pipefail

cmd=${1:?usage: $0 start|stop DIR}
dir=$(mkdir -p "${2:?usage: $0 start|stop DIR}" && cd "$2" && pwd)

stop() {
    for name in slurmd slurmctld munged; do
        if [ -f "$dir/$name.pid" ]; then
            kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
        fi
    done
    for name in slurmd slurmctld munged; do
        if [ -f "$dir/$name.pid" ]; then
            pid=$(cat "$dir/$name.pid")
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$dir/$name.pid"
        fi
    done
    if [ -f "$dir/munge-dir" ]; then
        rm -rf "$(cat "$dir/munge-dir")"
        rm -f "$dir/munge-dir"
    fi
}

if [ "$cmd" = stop ]; then
    stop
    exit 0
fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "slurm_single_node: run as root" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    apt-get clean
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
mkdir -p "$dir/state" "$dir/spool" "$dir/log"
# munged runs as user munge and must reach its directory: not under DIR (which may sit in a
# private temporary directory), but in a fresh one of its own
munge_dir=$(mktemp -d /tmp/hybatch-munge.XXXXXX)
echo "$munge_dir" > "$dir/munge-dir"
chown munge:munge "$munge_dir"
chmod 0711 "$munge_dir"
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --force >/dev/null 2>&1 || \
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
socket="$munge_dir/munge.socket"
runuser -u munge -- munged --socket="$socket" --pid-file="$munge_dir/munged.pid" \
    --log-file="$munge_dir/munged.log" --seed-file="$munge_dir/munged.seed"
cp "$munge_dir/munged.pid" "$dir/munged.pid"

cat > "$dir/slurm.conf" <<EOF
ClusterName=hybatch
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
cat > "$dir/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
EOF

export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 300); do
    if sinfo -h -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
        echo "SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.1
done
echo "slurm_single_node: the node did not become idle; see $dir/log" >&2
sinfo >&2 || true
stop
exit 1
