#!/usr/bin/env bash
# Everything that reads the shipped `tiny`, rerun after its weights change (about 110 minutes on
# two cores). Run from the project root with the virtual environment active, after copying the
# new weights to data/checkpoints/tiny/model.safetensors (commit them before the findings step,
# which refuses a checkout with uncommitted changes):
#
#     bash data/checkpoints/reship.sh            # all steps
#     bash data/checkpoints/reship.sh notebooks  # from the step named, to the end
#
# Steps: eval (the card's two numbers), findings (experiments 5 and 6, in parallel), bench (the
# short-prompt benches that choose the default sampler, and the no-repeat ones notebook 08
# reads), samples (the card's three samples), notebooks (every notebook and worked solution that loads a shipped model), gallery (the
# README's screenshots, from a real browser). A step whose JSON already records the new weights'
# SHA-256 is skipped, so the script can be rerun after a failure without redoing work; logs go
# to runs/reship/. What it does not do: update the prose of the card, README and notebooks, and
# choose the sampler's defaults from the bench; both are read off its outputs by a person.
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=(eval findings bench samples notebooks gallery)
START=${1:-eval}
run=0
for s in "${STEPS[@]}"; do [ "$s" = "$START" ] && run=1; declare "DO_$s=$run"; done
[ "$run" = 1 ] || { echo "unknown step '$START'; steps: ${STEPS[*]}" >&2; exit 2; }
LOG=runs/reship
mkdir -p "$LOG"
WEIGHTS=data/checkpoints/tiny/model.safetensors
SHA=$(python -c "from ddlm.files import sha256_file; print(sha256_file('$WEIGHTS'))")
echo "tiny weights: $SHA"

# fresh FILE KEY...: true if the JSON FILE records the new weights at the path KEY... (the last
# key may name a dict of checkpoints, e.g. provenance weights_sha256 tiny)
fresh() {
  python - "$SHA" "$@" <<'PY'
import json, sys
sha, path, keys = sys.argv[1], sys.argv[2], sys.argv[3:]
try:
    d = json.load(open(path))
    for k in keys:
        d = d[k]
except (OSError, KeyError, TypeError, ValueError):
    sys.exit(1)
sys.exit(0 if d == sha else 1)
PY
}


if [ "$DO_eval" = 1 ]; then
  for L in 1024 128; do
    out=data/checkpoints/tiny/eval.json
    [ "$L" = 128 ] && out=data/checkpoints/tiny/eval-128.json
    if fresh "$out" weights_sha256; then echo "eval $L: fresh"; continue; fi
    ddlm eval --checkpoint tiny --seq-len "$L" --samples 4 --json > "$out.tmp"
    mv "$out.tmp" "$out"
    python -c "import json; d = json.load(open('$out')); print('eval $L:', round(d['bits_per_byte'], 4), '+-', round(d['stderr'], 4))"
  done
fi

if [ "$DO_findings" = 1 ]; then
  # a committed result must come from a clean checkout (tests/test_experiments.py): commit the
  # new weights and their evaluations first
  if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "findings: the checkout has uncommitted changes; commit them, then: $0 findings" >&2
    exit 1
  fi
  pids=()
  for e in e5_steps e6_diffusion_vs_ar; do
    if fresh "data/findings/$e.json" provenance weights_sha256 tiny; then echo "$e: fresh"; continue; fi
    OMP_NUM_THREADS=1 python "experiments/$e.py" > "$LOG/$e.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  echo "findings: done"
fi

bench() {  # bench NAME [ARGS...]: bench/NAME.json from bench/short_prompts.py ARGS
  local name=$1; shift
  if fresh "bench/$name.json" weights_sha256; then echo "$name: fresh"; return; fi
  python bench/short_prompts.py "$@" --json "bench/$name.json" > "$LOG/$name.log" 2>&1
  echo "$name: done"
}
if [ "$DO_bench" = 1 ]; then
  PMI="probability@64 probability pmi@64 pmi pmi,blocks32@64 pmi,guidance1@64 margin,guidance1@64 margin,guidance1"
  GAP="pmi@64 pmi,min_gap1@64 pmi,min_gap2@64 probability,min_gap2@64 pmi,min_gap2,T0.5,top_p0.8@64
       pmi,min_gap2,T1,top_p0.5@64 pmi,threshold0.9@64 pmi,T0.5,top_p0.8,threshold0.9@64
       pmi,T1,top_p0.5@64 pmi pmi,T1,top_p0.5 pmi,T0.5,top_p0.8 pmi,T1,top_p0.6
       pmi,min_gap2,T1,top_p0.3@64 pmi,min_gap2,T1,top_p0.3 pmi,min_gap2,T1,top_p0.4@64
       pmi,min_gap2,T1,top_p0.4"
  bench short_prompts
  bench short_prompts_held_out --held-out
  bench short_prompts_pmi --settings $PMI
  bench short_prompts_pmi_held_out --held-out --settings $PMI
  bench short_prompts_gap --seeds 3 --settings $GAP
  bench short_prompts_gap_held_out --held-out --seeds 3 --settings $GAP
  REP="pmi@64 pmi pmi,min_gap2@64 pmi,no_repeat8 pmi,no_repeat12 pmi,no_repeat16 pmi,no_repeat8@64
       pmi,no_repeat12@64 pmi,min_gap2,no_repeat8@64 pmi,min_gap2,no_repeat12@64
       pmi,min_gap2,no_repeat16@64"
  bench short_prompts_norepeat --settings $REP --show 1
  bench short_prompts_norepeat_held_out --held-out --settings $REP --show 1
fi

if [ "$DO_samples" = 1 ]; then
  python data/checkpoints/samples.py | tee "$LOG/samples.log"
fi

if [ "$DO_notebooks" = 1 ]; then
  python notebooks/run_all.py 00 06 07 08 09 10 solutions/00_ solutions/03_ solutions/06_ \
    solutions/08_ solutions/09_ solutions/10_ 2>&1 | tee "$LOG/notebooks.log"
  ruff format notebooks
fi

if [ "$DO_gallery" = 1 ]; then
  python tests/browser/make_gallery.py 2>&1 | tee "$LOG/gallery.log"
fi
echo "reship: done; now update the card, README and notebook prose from these outputs"
