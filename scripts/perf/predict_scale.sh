#!/usr/bin/env bash
# The measurements of docs/decisions/predict-solver.md, in one exclusive section, most important
# first: the full 60,000 Fashion-MNIST training images with widealign's NTK predictor (f32), the
# solver comparison at 10,000 (blocked Cholesky f32/f64 against conjugate gradients), the
# 10,000-image anchor against neural-tangents (both kernels), the 60,000 NNGP predictor, and
# neural-tangents' own 60,000 NTK attempt under a 20 GB address-space cap.
# Needs: cargo build --release -p widealign-cli && cargo build --release -p widealign-ntk
#        --example predict_solvers; apt-get install dataset-fashion-mnist; /tmp/venv-nt.
# Usage: scripts/perf/predict_scale.sh OUT_DIR   (the binaries are copied to OUT_DIR first, so
# rebuilding the worktree while the script waits for the lock does not change what is measured)
set -eu
out=${1:-/tmp/predict-results}
mkdir -p "$out"
cp target/release/widealign "$out/widealign"
cp target/release/examples/predict_solvers "$out/predict_solvers"
set +e
py=/tmp/venv-nt/bin/python
flock -x /tmp/widealign-cpu.lock bash -c "
  date -u +%FT%TZ > '$out/start'
  $py scripts/perf/nt_predict.py --n-train 60000 --kernels ntk --precisions f32 --skip-nt --bin '$out/widealign' > '$out/widealign-60000-ntk.txt' 2>&1
  date -u +%FT%TZ > '$out/t1'
  '$out/predict_solvers' 10000 1e-4 512 > '$out/solvers-10000.json' 2> '$out/solvers-10000.err'
  $py scripts/perf/nt_predict.py --n-train 10000 --precisions f32 --bin '$out/widealign' > '$out/anchor-10000.txt' 2>&1
  date -u +%FT%TZ > '$out/t2'
  $py scripts/perf/nt_predict.py --n-train 60000 --kernels nngp --precisions f32 --skip-nt --bin '$out/widealign' > '$out/widealign-60000-nngp.txt' 2>&1
  date -u +%FT%TZ > '$out/t3'
  $py scripts/perf/nt_predict.py --n-train 60000 --kernels ntk --skip-widealign > '$out/nt-60000.txt' 2>&1
  date -u +%FT%TZ > '$out/end'
"
