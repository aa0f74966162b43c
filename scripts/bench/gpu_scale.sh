#!/usr/bin/env bash
# One GPU, a 7B shape: a DPO + MLC training step with LoRA and activation checkpointing in
# bf16 on a model with a real 7B config.json and random weights (nothing to download).
# Reports peak device memory, tokens/s and MFU as one JSON line (and in $OUT, when set).
#
#   scripts/bench/gpu_scale.sh                    # on a GPU machine (binaries built beforehand)
#   DEVICE=cpu LAYERS=2 BATCH=1 SEQ=256 scripts/bench/gpu_scale.sh   # CPU dry run
#
# Settings (environment):
#   CONFIG   a model's config.json (default docs/plan-configs/qwen2.5-7b-instruct/config.json)
#   DEVICE   cuda (default) | cpu
#   LAYERS   keep the first N decoder layers (default: all; a dry run uses 2)
#   BATCH    records per micro-batch (default 4); SEQ: tokens per record, about (default 1024)
#   LANGS    MLC's languages (default 4: en + 3 variants); STEPS (default 4; the first is warm-up)
#   RANK     LoRA rank (default 16); CKPT gradient_checkpointing (default true)
#   ALIGN, RANDOM_CKPT   the binaries (default target/release/align and
#            target/release/examples/random_checkpoint; built with cargo when cargo is here)
#   WORK     scratch folder (default runs/gpu-scale); OUT: a folder for the summary JSON
# On the project's GPU machines libtorch comes from /opt/torch/.venv (libtorch.md): the
# script points LD_LIBRARY_PATH and LIBTORCH_CUDA there when it exists.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
config=${CONFIG:-docs/plan-configs/qwen2.5-7b-instruct/config.json}
device=${DEVICE:-cuda}; layers=${LAYERS:-}; batch=${BATCH:-4}; seq=${SEQ:-1024}
langs=${LANGS:-4}; steps=${STEPS:-4}; rank=${RANK:-16}; ckpt=${CKPT:-true}
work=${WORK:-runs/gpu-scale}
align=${ALIGN:-target/release/align}
random_ckpt=${RANDOM_CKPT:-target/release/examples/random_checkpoint}

tl=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
if [[ -d $tl ]]; then
    export LD_LIBRARY_PATH="$tl${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LIBTORCH_CUDA="$tl/libtorch_cuda.so"
fi
if [[ ! -x $align || ! -x $random_ckpt ]]; then
    command -v cargo >/dev/null || { echo "gpu_scale: $align or $random_ckpt missing and no cargo here; build them on a CPU machine and carry them" >&2; exit 1; }
    cargo build -q --release -p align-cli --bin align && cargo build -q --release -p lm-backend --example random_checkpoint
fi
[[ -f $config ]] || { echo "gpu_scale: no config $config" >&2; exit 1; }

rm -rf "$work"; mkdir -p "$work"
model="$work/model"
"$random_ckpt" "$config" "$model" --dtype bf16 ${layers:+--num-layers "$layers"} \
    --tokenizer crates/lm-backend/tests/fixtures/tokenizer

# Records: a prompt in $langs languages, chosen and rejected answers; about $seq tokens each
# with the fixture tokenizer (byte-level BPE, about 2 characters a token).
python3 scripts/bench/synthetic_pairs.py "$work/pairs.jsonl" "$((batch * steps))" "$seq" "$langs"
mlc_layer=$(python3 -c "import json,sys; n=json.load(open('$model/config.json'))['num_hidden_layers']; print(max(1, n // 2))")
languages=$(python3 -c "print(', '.join('\"%s\"' % t for t in ['en','de','sw','bn','th','zh','ar','ru'][:$langs]))")
cat > "$work/run.toml" <<EOF
[model]
path = "model"
dtype = "bf16"
device = "$device"

[data]
train = "pairs.jsonl"
languages = [$languages]
max_length = $((seq * 3))

[[objective]]
kind = "dpo"
beta = 0.1

[[objective]]
kind = "mlc"
weight = 0.5
layer = $mlc_layer

[optim]
lr = 1e-4
schedule = "constant"
warmup_ratio = 0.0

[train]
batch_size = $batch
max_steps = $steps
gradient_checkpointing = $ckpt

[lora]
r = $rank
alpha = $((rank * 2))
EOF

peak_file="$work/peak_mib"; : > "$peak_file"
poller=
if [[ $device == cuda* ]] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$work/smi.log" &
    poller=$!
fi
status=0
/usr/bin/time -v "$align" train --config "$work/run.toml" --output "$work/out" 2> "$work/time.log" || status=$?
[[ -n $poller ]] && kill "$poller" 2>/dev/null || true
[[ $status == 0 ]] || { tail -30 "$work/time.log" >&2; exit "$status"; }

python3 - "$work" "$model/config.json" "$config" "$device" "$batch" "$seq" "$langs" "$rank" "$ckpt" <<'PY'
import json, os, re, subprocess, sys
work, config_path, source, device, batch, seq, langs, rank, ckpt = sys.argv[1:]
cfg = json.load(open(config_path))
metrics = [json.loads(l) for l in open(os.path.join(work, "out", "metrics.jsonl"))]
timed = metrics[1:] or metrics  # the first step warms up kernels and the allocator
tokens = sum(m["tokens"] for m in timed); seconds = sum(m["step_time_s"] for m in timed)
# Parameters of the base (embedding and output projection included).
d, L, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
q, kv, ff = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd, cfg["intermediate_size"]
per_layer = d * q + 2 * d * kv + q * d + 3 * d * ff
params = L * per_layer + V * d * (1 if cfg.get("tie_word_embeddings") else 2)
# Model FLOPs per trained token: 6 N (forward 2N, backward 4N), the usual MFU convention
# (recomputation by checkpointing is not counted; LoRA's frozen base still needs the 2N of
# input gradients, so 6N overstates LoRA's useful work by about N: MFU is an upper bound).
flops = 6 * params * tokens / seconds
peak_dev_mib = None
smi = os.path.join(work, "smi.log")
if os.path.exists(smi):
    vals = [int(x) for x in open(smi).read().split() if x.isdigit()]
    peak_dev_mib = max(vals) if vals else None
peak_flops = None
if device.startswith("cuda"):
    name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout
    # Dense bf16 tensor-core peaks (vendor data sheets, SXM parts).
    for key, peak in [("H200", 989e12), ("H100", 989e12), ("A100", 312e12)]:
        if key in name:
            peak_flops = peak
rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(os.path.join(work, "time.log")).read())
out = {
    "bench": "gpu_scale", "device": device, "config": source, "layers": L,
    "params_b": round(params / 1e9, 3), "batch": int(batch), "seq_target": int(seq), "languages": int(langs),
    "lora_r": int(rank), "gradient_checkpointing": ckpt == "true", "steps_timed": len(timed),
    "tokens_per_s": round(tokens / seconds, 1), "step_time_s": round(seconds / len(timed), 3),
    "peak_device_mib_nvidia_smi": peak_dev_mib, "max_rss_mib": int(rss.group(1)) // 1024 if rss else None,
    "mfu": round(flops / peak_flops, 4) if peak_flops else None,
}
line = json.dumps(out)
print(line)
if os.environ.get("OUT"):
    open(os.path.join(os.environ["OUT"], "gpu_scale.json"), "a").write(line + "\n")
PY
