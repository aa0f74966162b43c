#!/usr/bin/env bash
# Data parallelism on the CPU: the same global batch trained by 1 process (all the cores) and
# by N processes (the cores split among them), on a SmolLM2-135M-shaped model with random
# weights (nothing to download). Prints one JSON line per world size: mean step time after
# the first step, tokens/s, mean communication time per step, optimizer state per process.
#
#   scripts/bench/data_parallel.sh
#
# Settings (environment):
#   NPROC      the world sizes to compare (default "1 2")
#   BATCH      global records per step (default 8); SEQ tokens per record, about (default 256)
#   STEPS      optimizer steps (default 6; the first is warm-up); LAYERS (default: all 30)
#   THREADS    CPU threads in all (default: the core count), split evenly among processes
#   SHARD      shard_optimizer (default false)
#   ALIGN, RANDOM_CKPT   the binaries (default target/release/align and
#              target/release/examples/random_checkpoint, built with cargo when missing)
#   WORK       scratch folder (default runs/data-parallel)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
nprocs=${NPROC:-"1 2"}; batch=${BATCH:-8}; seq=${SEQ:-256}; steps=${STEPS:-6}; layers=${LAYERS:-}
threads=${THREADS:-$(nproc)}; shard=${SHARD:-false}
work=${WORK:-runs/data-parallel}
align=${ALIGN:-target/release/align}
random_ckpt=${RANDOM_CKPT:-target/release/examples/random_checkpoint}
if [[ ! -x $align || ! -x $random_ckpt ]]; then
    cargo build -q --release -p align-cli --bin align && cargo build -q --release -p lm-backend --example random_checkpoint
fi

rm -rf "$work"; mkdir -p "$work"
# SmolLM2-135M's shape (its config.json on the Hugging Face hub).
cat > "$work/config.json" <<'EOF'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
 "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
 "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192,
 "rms_norm_eps": 1e-05, "rope_theta": 100000, "tie_word_embeddings": true,
 "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
EOF
"$random_ckpt" "$work/config.json" "$work/model" --dtype f32 ${layers:+--num-layers "$layers"} \
    --tokenizer crates/lm-backend/tests/fixtures/tokenizer >/dev/null

python3 scripts/bench/synthetic_pairs.py "$work/pairs.jsonl" "$((batch * steps))" "$seq" 2

for n in $nprocs; do
    per=$((batch / n)); t=$((threads / n)); (( t >= 1 )) || t=1
    cat > "$work/run$n.toml" <<EOF
[model]
path = "model"
[data]
train = "pairs.jsonl"
languages = ["en", "de"]
max_length = $((seq * 3))
[[objective]]
kind = "dpo"
[[objective]]
kind = "mlc"
weight = 0.5
layer = 15
[optim]
lr = 1e-5
warmup_ratio = 0.0
[train]
batch_size = $per
max_steps = $steps
shard_optimizer = $shard
EOF
    args=(train --config "$work/run$n.toml" --output "$work/out$n")
    (( n > 1 )) && args+=(--nproc "$n")
    OMP_NUM_THREADS=$t "$align" "${args[@]}" > "$work/log$n" 2>&1 || { tail -20 "$work/log$n" >&2; exit 1; }
    python3 - "$work/out$n/metrics.jsonl" "$n" "$t" "$(lscpu | sed -n 's/^Model name: *//p')" <<'PY'
import json, sys
path, n, threads, cpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
m = [json.loads(l) for l in open(path)][1:]
step = sum(x["step_time_s"] for x in m) / len(m)
print(json.dumps({
    "processes": n, "threads_per_process": threads, "cpu": cpu,
    "step_time_s": round(step, 3),
    "tokens_per_s": round(sum(x["tokens"] for x in m) / sum(x["step_time_s"] for x in m), 1),
    "comm_time_s": round(sum(x.get("comm_time_s", 0.0) for x in m) / len(m), 3),
    "optimizer_state_mib": m[0].get("optimizer_state_mib"),
}))
PY
done
