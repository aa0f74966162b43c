#!/usr/bin/env bash
# Training-step throughput of SmolLM2-135M on the CPU: polyalign (lm-backend) against
# transformers in PyTorch eager mode, same shapes, same threads, float32 and bfloat16, one
# after the other in this run (docs/benchmarks.md). Writes runs/bench-train-step.jsonl.
# Settings (environment): BATCH (4), SEQ (128), PROMPTS ("1 64": unscored prompt lengths, one
# pass each; 1 scores every next token), STEPS (5), THREADS (2), DTYPES ("f32 bf16"),
# PYTHON (else .venv-fixtures, else /work/venv-ref).
# The machine should be otherwise idle: the script prints `uptime` before and after.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
batch=${BATCH:-4}; seq=${SEQ:-128}; steps=${STEPS:-5}; threads=${THREADS:-2}
dtypes=${DTYPES:-"f32 bf16"}; prompts=${PROMPTS:-"1 64"}
python=${PYTHON:-}
for candidate in "$root/.venv-fixtures/bin/python" /work/venv-ref/bin/python; do
    [[ -z "$python" && -x "$candidate" ]] && python=$candidate
done
model=.models/SmolLM2-135M-Instruct.Q4_1.gguf
[[ -f "$model" ]] || model=$(scripts/fixtures/get_smollm2.sh)
mkdir -p runs
[[ -f runs/smollm2-hf/model.safetensors ]] ||
    cargo run -q --release -p align-cli -- convert --from gguf "$model" --output runs/smollm2-hf --overwrite
cargo bench -q --bench train_step --no-run
bench() { cargo bench -q --bench train_step -- "$@"; }
out=runs/bench-train-step.jsonl
: > "$out"
echo "before: $(uptime)" >&2
common=(--batch "$batch" --seq "$seq" --steps "$steps" --threads "$threads")
for dtype in $dtypes; do
    for prompt in $prompts; do
        run=(--dtype "$dtype" --prompt "$prompt" "${common[@]}")
        bench runs/smollm2-hf --loss full "${run[@]}" | tee -a "$out"
        bench runs/smollm2-hf --loss selected "${run[@]}" | tee -a "$out"
        "$python" scripts/bench/train_step_torch.py runs/smollm2-hf --attn eager "${run[@]}" | tee -a "$out"
        "$python" scripts/bench/train_step_torch.py runs/smollm2-hf --attn sdpa "${run[@]}" | tee -a "$out"
    done
done
echo "after: $(uptime)" >&2
"$python" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'impl':34} {'dtype':5} {'prompt':>6} {'step s':>8} {'tok/s':>8} {'loss':>8} {'GEMM GF/s':>10} {'floor %':>8}")
for r in rows:
    print(f"{r['impl']:34} {r['dtype']:5} {r['prompt']:6} {r['step_s_median']:8.3f} {r['tokens_per_s']:8.1f} "
          f"{r['loss']:8.4f} {r['gemm_gflops']:10.1f} {100 * r['floor_fraction']:7.1f}%")
for key in sorted({(r['dtype'], r['prompt']) for r in rows}):
    ours = [r for r in rows if (r['dtype'], r['prompt']) == key and r['impl'].startswith('polyalign')]
    ref = [r for r in rows if (r['dtype'], r['prompt']) == key and r['impl'].startswith('transformers')]
    for o in ours:
        for t in ref:
            print(f"{key[0]}, prompt {key[1]}: {o['impl']} / {t['impl']}: "
                  f"{o['tokens_per_s'] / t['tokens_per_s']:.2f}x tokens/s")
PY
