#!/usr/bin/env bash
# One prepared GPU session (run from the repository root on a CUDA machine):
#  1. the `seed` preset for 200 steps with fp16 + GradScaler, then with bf16 autocast;
#  2. the shipped checkpoints: `tiny` (diffusion) and `tiny-ar` (autoregressive), trained on
#     the embedded corpus for a fixed wall-clock budget each (steps computed from a probe);
#  3. validation bits per byte of both.
# Results: $OUT/report.tar.gz (logs, metrics, eval JSON, configs) and the two weight files
# $OUT/tiny.safetensors and $OUT/tiny-ar.safetensors (OUT defaults to ./gpu-out).
# It fails loudly: any failing command stops the script (set -e, pipefail), and every command's
# output, stderr included, is kept in $REP/*.log (which goes into the report).
# EOS=true trains the diffusion model with EOS between documents, as the shipped one is.
set -euo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-gpu-out}
RUNS=${RUNS:-/tmp/ddlm-gpu-runs}
REP="$RUNS/report"
DIFF_SECONDS=${DIFF_SECONDS:-200}
RANDOM_LENGTH=${RANDOM_LENGTH:-0.0}  # e.g. 0.05: train on some short windows too
AR_SECONDS=${AR_SECONDS:-110}
EOS=${EOS:-true}
mkdir -p "$OUT" "$RUNS" "$REP"
# The logs reach $OUT whether the script ends well or stops at a failing command.
trap 'tar -czf "$OUT/report.tar.gz" -C "$RUNS" report; echo "report: $OUT/report.tar.gz"' EXIT
py=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$REP/gpu.txt"
$py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$REP/gpu.txt"

common="--data pydoc --device cuda --sample-every 0 --log-every 20"
for amp in fp16 bf16; do
  echo "== seed preset, amp=$amp"
  $py -m ddlm train $common --preset seed --steps 200 --batch-size 8 --seq-len 768 --amp $amp \
      --warmup-steps 20 --lr 1e-3 --eval-every 100 --ckpt-every 0 --out "$RUNS/seed-$amp" \
      > "$REP/seed-$amp.log" 2>&1
  cp "$RUNS/seed-$amp/metrics.jsonl" "$REP/seed-$amp.jsonl"
done

echo "== probe: tiny preset throughput"
$py -m ddlm train $common --preset tiny --steps 40 --batch-size 64 --seq-len 1024 --amp bf16 \
    --eval-every 0 --ckpt-every 0 --log-every 10 --out "$RUNS/probe" > "$REP/probe.log" 2>&1
tok_s=$($py -c "import json; print(json.loads(open('$RUNS/probe/metrics.jsonl').read().splitlines()[-1])['tokens_per_s'])")
diff_steps=$($py -c "print(max(200, int($tok_s * $DIFF_SECONDS / 65536) // 100 * 100))")
ar_steps=$($py -c "print(max(200, int($tok_s * $AR_SECONDS / 65536) // 100 * 100))")
echo "tiny: $tok_s tokens/s -> $diff_steps diffusion steps, $ar_steps AR steps" | tee "$REP/plan.txt"

recipe="--preset tiny --batch-size 64 --seq-len 1024 --amp bf16 --lr 2e-3 --warmup-steps 200 --ckpt-every 500"
echo "== tiny diffusion"
( set -x; $py -m ddlm train $common $recipe --steps $diff_steps --eval-every 500 --random-length-frac $RANDOM_LENGTH \
    --eos $EOS --out "$RUNS/tiny" ) > "$REP/tiny-train.log" 2>&1
echo "== tiny AR"
( set -x; $py -m ddlm train $common $recipe --arch ar --dropout 0.1 --steps $ar_steps --eval-every 500 \
    --out "$RUNS/tiny-ar" ) > "$REP/tiny-ar-train.log" 2>&1

for run in tiny tiny-ar; do
  $py -m ddlm eval --checkpoint "$RUNS/$run" --data pydoc --seq-len 1024 --samples 16 --json \
      > "$REP/$run-eval.json" 2> "$REP/$run-eval.log"
  cat "$REP/$run-eval.json"
  mkdir -p "$REP/$run"
  cp "$RUNS/$run/config.json" "$RUNS/$run/metrics.jsonl" "$RUNS/$run/train_config.json" "$REP/$run/"
  cp "$RUNS/$run/model.safetensors" "$OUT/$run.safetensors"
done
ls -la "$OUT"
