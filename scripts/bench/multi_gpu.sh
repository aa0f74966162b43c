#!/usr/bin/env bash
# Several GPUs, one process each: `align train --nproc N` (N = the visible GPUs) on a model
# with a real 7B config.json and random weights (nothing to download), a DPO + MLC full
# fine-tune in bf16 with activation checkpointing and the sharded optimizer (ZeRO-1). Reports
# tokens/s, step and communication time, the optimizer state per process and each GPU's peak
# memory (nvidia-smi) as one JSON line (and in $OUT, when set). Prepared; not yet run on GPUs.
#
#   scripts/bench/multi_gpu.sh                   # on a multi-GPU machine (binaries built beforehand)
#   NPROC=2 DEVICE=cpu LAYERS=2 SEQ=128 BATCH=1 scripts/bench/multi_gpu.sh   # CPU dry run
#
# Settings (environment):
#   CONFIG   a model's config.json (default docs/plan-configs/qwen2.5-7b-instruct/config.json)
#   NPROC    processes (default: the GPUs nvidia-smi lists); DEVICE cuda (default) | cpu
#   LAYERS   keep the first N decoder layers (default: all)
#   BATCH    records per process and micro-batch (default 2); SEQ tokens per record (default 1024)
#   STEPS    (default 4; the first is warm-up); SHARD shard_optimizer (default true)
#   LORA     a LoRA rank instead of the full fine-tune (default: none)
#   ALIGN, RANDOM_CKPT, WORK, OUT   as in gpu_scale.sh
# On the project's GPU machines libtorch comes from /opt/torch/.venv (libtorch.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
config=${CONFIG:-docs/plan-configs/qwen2.5-7b-instruct/config.json}
device=${DEVICE:-cuda}; layers=${LAYERS:-}; batch=${BATCH:-2}; seq=${SEQ:-1024}
steps=${STEPS:-4}; shard=${SHARD:-true}; lora=${LORA:-}
work=${WORK:-runs/multi-gpu}
align=${ALIGN:-target/release/align}
random_ckpt=${RANDOM_CKPT:-target/release/examples/random_checkpoint}

tl=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
if [[ -d $tl ]]; then
    export LD_LIBRARY_PATH="$tl${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LIBTORCH_CUDA="$tl/libtorch_cuda.so"
fi
if [[ -z ${NPROC:-} ]]; then
    if [[ $device == cuda* ]]; then
        NPROC=$(nvidia-smi --list-gpus | wc -l)
    else
        NPROC=2
    fi
fi
nproc=$NPROC
(( nproc >= 2 )) || echo "multi_gpu: only $nproc process(es); data parallelism needs 2 or more" >&2
if [[ ! -x $align || ! -x $random_ckpt ]]; then
    command -v cargo >/dev/null || { echo "multi_gpu: $align or $random_ckpt missing and no cargo here" >&2; exit 1; }
    cargo build -q --release -p align-cli --bin align && cargo build -q --release -p lm-backend --example random_checkpoint
fi

rm -rf "$work"; mkdir -p "$work"
"$random_ckpt" "$config" "$work/model" --dtype bf16 ${layers:+--num-layers "$layers"} \
    --tokenizer crates/lm-backend/tests/fixtures/tokenizer

python3 scripts/bench/synthetic_pairs.py "$work/pairs.jsonl" "$((batch * nproc * steps))" "$seq" 4
mlc_layer=$(python3 -c "import json; print(max(1, json.load(open('$work/model/config.json'))['num_hidden_layers'] // 2))")
cat > "$work/run.toml" <<EOF
[model]
path = "model"
dtype = "bf16"
device = "$device"
[data]
train = "pairs.jsonl"
languages = ["en", "de", "sw", "bn"]
max_length = $((seq * 3))
[[objective]]
kind = "dpo"
[[objective]]
kind = "mlc"
weight = 0.5
layer = $mlc_layer
[optim]
lr = 1e-5
schedule = "constant"
warmup_ratio = 0.0
[train]
batch_size = $batch
max_steps = $steps
gradient_checkpointing = true
shard_optimizer = $shard
collective_timeout_s = 600
EOF
[[ -n $lora ]] && printf '[lora]\nr = %s\nalpha = %s\n' "$lora" "$((lora * 2))" >> "$work/run.toml"

poller=
if [[ $device == cuda* ]] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200 > "$work/smi.log" &
    poller=$!
fi
status=0
"$align" train --nproc "$nproc" --config "$work/run.toml" --output "$work/out" > "$work/train.log" 2>&1 || status=$?
[[ -n $poller ]] && kill "$poller" 2>/dev/null || true
[[ $status == 0 ]] || { tail -30 "$work/train.log" >&2; exit "$status"; }

python3 - "$work" "$nproc" "$device" "$batch" "$seq" "$shard" "${lora:-0}" <<'PY'
import json, os, sys
work, nproc, device, batch, seq, shard, lora = sys.argv[1:]
m = [json.loads(l) for l in open(os.path.join(work, "out", "metrics.jsonl"))]
timed = m[1:] or m
seconds = sum(x["step_time_s"] for x in timed)
peaks = {}
smi = os.path.join(work, "smi.log")
if os.path.exists(smi):
    for line in open(smi):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            peaks[parts[0]] = max(peaks.get(parts[0], 0), int(parts[1]))
out = {
    "bench": "multi_gpu", "device": device, "processes": int(nproc), "batch_per_process": int(batch),
    "seq_target": int(seq), "shard_optimizer": shard == "true", "lora_r": int(lora) or None,
    "steps_timed": len(timed), "step_time_s": round(seconds / len(timed), 3),
    "tokens_per_s": round(sum(x["tokens"] for x in timed) / seconds, 1),
    "comm_time_s": round(sum(x.get("comm_time_s", 0.0) for x in timed) / len(timed), 3),
    "optimizer_state_mib_per_process": m[0].get("optimizer_state_mib"),
    "peak_mib_per_gpu_nvidia_smi": peaks or None,
}
line = json.dumps(out)
print(line)
if os.environ.get("OUT"):
    open(os.path.join(os.environ["OUT"], "multi_gpu.json"), "a").write(line + "\n")
PY
