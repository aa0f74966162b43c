#!/usr/bin/env bash
# Peak memory of one training step of `align train` with and without activation
# checkpointing ([train] gradient_checkpointing), docs/benchmarks.md "Memory of a training
# step". Each configuration is one `align train` run of one optimizer step (the reference
# log-prob cache included) whose peak resident memory (max RSS) `/usr/bin/time -v` reports;
# with DEVICE=cuda the peak GPU memory that nvidia-smi sees is sampled as well (libtorch's
# caching allocator's reservation: tch exposes no max_memory_allocated).
#
# Records are synthetic: RECORDS records whose prompt has PROMPT tokens and whose chosen and
# rejected completions make sequences of SEQ tokens each (prompt + completion + EOS), built
# from one-token words of the SmolLM2 tokenizer, with a second-language prompt variant of the
# same length for MLC. One micro-batch holds all RECORDS records.
#
# Settings (environment): MODEL (runs/smollm2-hf), RECORDS (8), SEQS ("256 512 1024"), PROMPT
# (a quarter of each SEQ), DTYPES ("f32"), OBJECTIVES ("dpo dpo+mlc"), CHECKPOINTING
# ("false true"), ATTENTION (sdpa), PACKING (true), DEVICE (cpu), THREADS (2), ALIGN (the align
# binary; default target/debug/align, built if absent: the tensor work runs in libtorch, so
# the build profile changes little but time). Writes OUT (runs/bench-train-memory.jsonl) and prints
# a Markdown table. Each run saves its model and optimizer state (about 12 bytes per
# parameter in f32) under a temporary folder of TMPDIR, deleted after the run; with a full
# disk, TMPDIR=/dev/shm keeps them in memory (not counted in the run's RSS).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
model=$(realpath "${MODEL:-runs/smollm2-hf}")
records=${RECORDS:-8}; seqs=${SEQS:-"256 512 1024"}; dtypes=${DTYPES:-f32}
objectives=${OBJECTIVES:-"dpo dpo+mlc"}; checkpointing=${CHECKPOINTING:-"false true"}
attention=${ATTENTION:-sdpa}; packing=${PACKING:-true}; device=${DEVICE:-cpu}; threads=${THREADS:-2}
align=${ALIGN:-target/debug/align}
[[ -f "$model/config.json" ]] || { echo "no model folder at $model (set MODEL)" >&2; exit 1; }
[[ -x "$align" ]] || cargo build -q -p align-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=${OUT:-runs/bench-train-memory.jsonl}
mkdir -p runs
: > "$out"
echo "load before: $(uptime)" >&2

# Records of `seq` tokens per sequence with a `prompt`-token prompt (and its variant).
write_records() {
    python3 - "$1" "$records" "$2" "$3" <<'PY'
import json, sys
path, n, seq, prompt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
# Words the SmolLM2 tokenizer encodes as one token each (with their leading space).
words = "the of and to in is that for it as with on be at by this from or an are".split()
def text(length, shift):
    return "".join(" " + words[(i * 7 + shift) % len(words)] for i in range(length))
completion = seq - prompt - 1  # the EOS ends each completion
with open(path, "w") as f:
    for i in range(n):
        record = {"id": f"mem-{i}", "prompt": {"en": text(prompt, i), "de": text(prompt, i + 3)},
                  "chosen": text(completion, i + 1), "rejected": text(completion, i + 2)}
        f.write(json.dumps(record) + "\n")
PY
}

for seq in $seqs; do
    prompt=${PROMPT:-$((seq / 4))}
    data="$work/records-$seq.jsonl"
    write_records "$data" "$seq" "$prompt"
    for dtype in $dtypes; do
        for objective in $objectives; do
            for ckpt in $checkpointing; do
                name="$seq-$dtype-$objective-$ckpt"
                terms='[[objective]]
kind = "dpo"'
                if [[ "$objective" == "dpo+mlc" ]]; then
                    terms="$terms
[[objective]]
kind = \"mlc\"
weight = 0.5
layer = 15"
                fi
                cat > "$work/$name.toml" <<EOF
[model]
path = "$model"
dtype = "$dtype"
device = "$device"
attention = "$attention"
[data]
train = "$data"
languages = ["en", "de"]
max_length = $((seq + 8))
$terms
[optim]
lr = 1e-6
schedule = "constant"
warmup_ratio = 0.0
[train]
batch_size = $records
max_steps = 1
packing = $packing
gradient_checkpointing = $ckpt
EOF
                gpu_peak=""
                sampler=""
                if [[ "$device" == cuda* ]] && command -v nvidia-smi > /dev/null; then
                    (while true; do
                        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1
                        sleep 0.2
                    done) > "$work/$name.gpu" &
                    sampler=$!
                fi
                OMP_NUM_THREADS=$threads /usr/bin/time -v "$align" train --config "$work/$name.toml" \
                    --output "$work/$name.out" > "$work/$name.log" 2> "$work/$name.time" ||
                    { cat "$work/$name.time" >&2; exit 1; }
                if [[ -n "$sampler" ]]; then
                    kill "$sampler"
                    gpu_peak=$(sort -n "$work/$name.gpu" | tail -1)
                fi
                rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/$name.time")
                wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/$name.time")
                python3 - "$work/$name.out/metrics.jsonl" "$seq" "$prompt" "$records" "$dtype" "$objective" \
                    "$ckpt" "$attention" "$packing" "$rss_kib" "$wall" "${gpu_peak:-}" >> "$out" <<'PY'
import json, sys
m = json.loads(open(sys.argv[1]).readline())
seq, prompt, records, dtype, objective, ckpt, attention, packing, rss, wall, gpu = sys.argv[2:]
row = {"seq": int(seq), "prompt": int(prompt), "records": int(records), "dtype": dtype,
       "objective": objective, "gradient_checkpointing": ckpt == "true", "attention": attention,
       "packing": packing == "true", "max_rss_gib": int(rss) / 2**20, "wall": wall,
       "step_time_s": m["step_time_s"], "tokens": m["tokens"], "loss": m["loss"]}
if gpu:
    row["gpu_peak_used_gib"] = int(gpu) / 1024
print(json.dumps(row))
PY
                tail -1 "$out" >&2
                rm -rf "$work/$name.out" # the saved model and optimizer state: GBs each
            done
        done
    done
done
echo "load after: $(uptime)" >&2
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
gpu = any("gpu_peak_used_gib" in r for r in rows)
head = "| tokens per sequence (prompt) | dtype | objective | tokens forwarded | checkpointing | max RSS (GiB) | step (s) |"
print(head + (" GPU peak (GiB) |" if gpu else ""))
print("|" + "---|" * (head.count("|") - 1 + gpu))
for r in rows:
    line = (f"| {r['seq']} ({r['prompt']}) | {r['dtype']} | {r['objective']} | {r['tokens']} | "
            f"{'yes' if r['gradient_checkpointing'] else 'no'} | {r['max_rss_gib']:.2f} | {r['step_time_s']:.1f} |")
    print(line + (f" {r.get('gpu_peak_used_gib', float('nan')):.2f} |" if gpu else ""))
PY
