#!/usr/bin/env bash
# A real Slurm cluster in the tests: starts a one-node Slurm (slurmctld + slurmd + munged, its
# own configuration and state in a temporary folder, ports of its own) on localhost, then
#   (a) runs a 12-run sweep as `sbatch --array=0-3` with `--shard auto`, merges the shard files
#       and compares them with the unsharded sweep (same set of runs, same numbers, nothing
#       lost or duplicated);
#   (b) starts a long `train` job with a checkpoint, requeues it mid-run with
#       `scontrol requeue`, and checks that the requeued job resumed from its checkpoint and
#       finished with the uninterrupted run's record (timings aside);
#   (c) stops every daemon it started (also when a check fails: trap on EXIT).
# Exit 0 when every check passed; 1 when one failed; 77 when it cannot run here (not root, no
# apt-get to install slurm-wlm and munge).
#
# Usage: scripts/slurm/selftest.sh [path/to/widealign]   (default: target/release/widealign)
# Needs root: it installs Debian's slurm-wlm and munge when missing and runs the daemons as root.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="$(realpath "${1:-$ROOT/target/release/widealign}")"
t0=$(date +%s)
say() { echo "[slurm-selftest +$(( $(date +%s) - t0 ))s] $*"; }
fail() { say "FAIL: $*"; exit 1; }

if [[ $(id -u) != 0 ]]; then
  say "SKIP: needs root (installs slurm-wlm and munge, runs slurmctld/slurmd)"; exit 77
fi
[[ -x "$BIN" ]] || { say "FAIL: no widealign binary at $BIN (cargo build --release first)"; exit 1; }
command -v python3 >/dev/null || { say "SKIP: python3 is needed to compare results"; exit 77; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if ! command -v apt-get >/dev/null; then
    say "SKIP: slurm-wlm/munge missing and no apt-get to install them"; exit 77
  fi
  say "installing slurm-wlm and munge (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
say "$(slurmctld -V)"

WORK="$(mktemp -d /tmp/widealign-slurm.XXXXXX)"
chmod 755 "$WORK"
export SLURM_CONF="$WORK/etc/slurm.conf"
mkdir -p "$WORK"/{etc,state,spool,log,run,munge,jobs}
NODE=wa-selftest
# ports of this cluster only (a system Slurm, or another self-test, may use the defaults)
CTLD_PORT=$(( 20000 + ($$ % 20000) ))
SLURMD_PORT=$(( CTLD_PORT + 1 ))

PIDS=()   # "name:pid" of every daemon this script started
stop_daemons() {
  local rc=$?
  set +e
  say "stopping the daemons"
  scontrol shutdown >/dev/null 2>&1
  for entry in "${PIDS[@]}"; do
    name=${entry%%:*}; pid=${entry#*:}
    # slurmctld and slurmd end on `scontrol shutdown`; munged on SIGTERM
    [[ $name == munged ]] && kill "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null; sleep 0.2
    fi
    if kill -0 "$pid" 2>/dev/null; then say "could not stop $name (pid $pid)"; rc=1
    else say "stopped $name (pid $pid)"; fi
  done
  if [[ $rc -ne 0 ]]; then
    say "FAILED (exit $rc); logs kept in $WORK"
    tail -n 20 "$WORK"/log/*.log "$WORK"/jobs/*.log 2>/dev/null
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
# Waits for the pid file $2 of daemon $1 and records the daemon for stop_daemons.
started() {
  for _ in $(seq 100); do [[ -s $2 ]] && break; sleep 0.1; done
  [[ -s $2 ]] || fail "$1 did not start (no $2)"
  PIDS+=("$1:$(cat "$2")")
}
trap stop_daemons EXIT
trap 'exit 1' INT TERM

# --- munge: a key of its own, its own socket ---
mungekey --create --keyfile="$WORK/munge/munge.key" >/dev/null 2>&1 \
  || dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$WORK/munge/munge.key"
chmod 755 "$WORK/munge"
munged --force --key-file="$WORK/munge/munge.key" --socket="$WORK/munge/munge.sock" \
  --pid-file="$WORK/run/munged.pid" --log-file="$WORK/log/munged.log" \
  --seed-file="$WORK/munge/seed" 2>>"$WORK/log/munged.log" || fail "munged did not start"
started munged "$WORK/run/munged.pid"

cat >"$SLURM_CONF" <<EOF
ClusterName=widealign-selftest
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$WORK/munge/munge.sock
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool/%n
SlurmctldPidFile=$WORK/run/slurmctld.pid
SlurmdPidFile=$WORK/run/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
PlugStackConfig=$WORK/etc/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
JobRequeue=1
KillWait=20
SchedulerParameters=defer_batch=0
NodeName=$NODE NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=selftest Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
: >"$WORK/etc/plugstack.conf"

slurmctld -i 2>>"$WORK/log/slurmctld.log" || fail "slurmctld did not start"
started slurmctld "$WORK/run/slurmctld.pid"
slurmd -N "$NODE" 2>>"$WORK/log/slurmd.log" || fail "slurmd did not start"
started slurmd "$WORK/run/slurmd.pid"
for _ in $(seq 120); do
  state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
  [[ $state == idle ]] && break
  sleep 0.5
done
[[ ${state:-} == idle ]] || fail "node $NODE is not idle (state: '${state:-none}')"
say "cluster up: node $NODE idle, slurmctld port $CTLD_PORT"

# Waits until job $1 (and its array tasks) has left the queue.
wait_job() {
  for _ in $(seq 1200); do
    [[ -z $(squeue -h -j "$1" 2>/dev/null) ]] && return 0
    sleep 0.5
  done
  fail "job $1 still queued after 10 minutes: $(squeue -j "$1")"
}

J="$WORK/jobs"
cd "$J"

# --- (a) a 12-run sweep as a job array of 4 shards ---
cat >sweep.toml <<'EOF'
[base]
dataset = "digits"
train_size = 200
epochs = 2
width = 32
batch_size = 20
lr = 1.0
[grid]
rule = ["bp", "align-ada", "fa"]
seed = [0, 1, 2, 3]
EOF
cat >sweep.sbatch <<EOF
#!/bin/bash
#SBATCH --job-name=wa-sweep
#SBATCH --array=0-3
#SBATCH --cpus-per-task=1
#SBATCH --output=$J/sweep-%A_%a.log
set -euo pipefail
export RAYON_NUM_THREADS=1
"$BIN" --quiet sweep --config "$J/sweep.toml" --out "$J/shard-\${SLURM_ARRAY_TASK_ID}.jsonl" --shard auto --resume --json
EOF
jid=$(sbatch --parsable sweep.sbatch) || fail "sbatch of the sweep array was refused"
say "(a) submitted the sweep array job $jid (--array=0-3, --shard auto)"
wait_job "$jid"
for i in 0 1 2 3; do
  [[ -s shard-$i.jsonl ]] || { cat sweep-*.log; fail "shard $i wrote no results"; }
  say "(a) shard $i: $(wc -l <shard-$i.jsonl) runs; $(tail -n 1 sweep-${jid}_$i.log)"
done
cat shard-{0,1,2,3}.jsonl >merged.jsonl
RAYON_NUM_THREADS=1 "$BIN" --quiet sweep --config sweep.toml --out whole.jsonl --json >/dev/null
python3 - merged.jsonl whole.jsonl <<'EOF' || fail "(a) the merged shards differ from the unsharded sweep"
import json, sys
def load(p):
    out = {}
    for line in open(p):
        r = json.loads(line)
        key = json.dumps(r["config"], sort_keys=True)
        assert key not in out, f"{p}: run {key} appears twice"
        r.pop("seconds")
        for h in r["history"]:
            h.pop("seconds")
        out[key] = r
    return out
merged, whole = load(sys.argv[1]), load(sys.argv[2])
assert len(whole) == 12, f"the unsharded sweep has {len(whole)} runs"
assert merged.keys() == whole.keys(), "different sets of runs"
bad = [k for k in whole if merged[k] != whole[k]]
assert not bad, f"{len(bad)} runs differ, e.g. {bad[0]}"
print(f"[slurm-selftest] (a) merged shards: 12 runs, none lost or duplicated, identical to the unsharded sweep")
EOF
# the merged file is complete: resuming the whole grid against it runs nothing
"$BIN" --quiet sweep --config sweep.toml --out merged.jsonl --resume --json | grep -q '"skipped":12,"completed":0' \
  || fail "(a) sweep --resume on the merged file does not see 12 finished runs"

# --- (b) a long train job, requeued mid-run, resumes from its checkpoint ---
TRAIN=(train --dataset digits --train-size 1400 --width 640 --epochs 4 --batch-size 10
       --rule align-ada --optimizer adam --lr 0.003 --seed 1)
cat >train.sbatch <<EOF
#!/bin/bash
#SBATCH --job-name=wa-train
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=$J/train.log
# The requeue pattern: keep checkpointing to one file; when it exists, resume from it.
# Slurm signals every process of the job: the trap keeps this script alive until widealign
# has saved its checkpoint and exited (75).
trap 'echo "batch script: SIGTERM"' TERM
export RAYON_NUM_THREADS=1
CK="$J/train.safetensors"
resume=()
[[ -f \$CK ]] && resume=(--resume "\$CK")
echo "start: restart count \${SLURM_RESTART_COUNT:-0}, \${resume[*]:-fresh}"
"$BIN" --quiet ${TRAIN[*]} --checkpoint "\$CK" --checkpoint-every 25 "\${resume[@]}" --json >"$J/train-\${SLURM_RESTART_COUNT:-0}.json" &
wait \$!; rc=\$?
# a trapped signal interrupts wait: wait for widealign itself
while kill -0 \$! 2>/dev/null; do wait \$!; rc=\$?; done
echo "widealign exit status \$rc"
# 75: stopped with a checkpoint (time limit, preemption): ask for a requeue; when Slurm is
# already requeueing the job (scontrol requeue, preemption) this request is refused, harmlessly
if [[ \$rc == 75 ]]; then scontrol requeue "\$SLURM_JOB_ID" 2>&1 || echo "requeue request refused: Slurm is already requeueing the job"; fi
exit \$rc
EOF
RAYON_NUM_THREADS=1 "$BIN" --quiet "${TRAIN[@]}" --json >uninterrupted.json
tjid=$(sbatch --parsable train.sbatch) || fail "sbatch of the train job was refused"
say "(b) submitted the train job $tjid; waiting for its checkpoint to pass step 50"
steps_of() {
  python3 - "$1" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
print(json.loads(json.loads(b[8:8 + n])["__metadata__"]["state"])["steps"])
EOF
}
for _ in $(seq 1200); do
  if [[ -f train.safetensors ]] && (( $(steps_of train.safetensors) >= 50 )); then break; fi
  [[ -z $(squeue -h -j "$tjid") ]] && fail "(b) the train job ended before it could be requeued"
  sleep 0.1
done
scontrol requeue "$tjid" || fail "(b) scontrol requeue $tjid failed"
say "(b) requeued job $tjid (its checkpoint is at step $(steps_of train.safetensors))"
# Slurm holds a requeued job (PENDING, reason BeginTime) for about two minutes; a real cluster
# waits, this test releases it at once
for _ in $(seq 100); do
  [[ $(squeue -h -j "$tjid" -o %T) == PENDING ]] && break
  sleep 0.2
done
scontrol update JobId="$tjid" StartTime=now >/dev/null || fail "(b) cannot release the requeued job"
for _ in $(seq 600); do
  [[ -f train-1.json ]] && break
  sleep 0.5
done
wait_job "$tjid"
sed 's/^/    train.log: /' train.log
grep -q "widealign exit status 75" train.log || fail "(b) the first run did not stop with a checkpoint (exit 75)"
grep -q "restart count 1, --resume" train.log || fail "(b) the requeued job did not resume from the checkpoint"
python3 - train-1.json uninterrupted.json <<'EOF' || fail "(b) the requeued run's record differs from the uninterrupted run's"
import json, sys
def load(p):
    r = json.loads(open(p).read().strip().splitlines()[-1])
    r.pop("seconds")
    for h in r["history"]:
        h.pop("seconds")
    return r
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a == b, f"requeued: {a['test_loss']}, uninterrupted: {b['test_loss']}"
print(f"[slurm-selftest] (b) requeued run finished with the uninterrupted record: {a['steps']} steps, test_loss {a['test_loss']!r}, test_accuracy {a['test_accuracy']!r}")
EOF
say "all checks passed"
