#!/usr/bin/env bash
# The memory plan against the measured peak (docs/benchmarks.md): for each run config given,
# `align train --plan --json` (the estimate) and a real run of it under /usr/bin/time -v (its
# maximum resident set size), on the CPU, where resident memory is the device's memory.
#
# Usage: scripts/bench/plan_vs_measured.sh [CONFIG.toml...]   (default: scripts/bench/plan/*.toml)
#
# Each config's [data] train must be runs/plan-bench/pairs.jsonl (as in scripts/bench/plan/):
# before each run the script writes it with scripts/bench/plan_records.py to the shape the
# plan is asked for (--prompt-tokens PROMPT_TOKENS: prompts of that many tokens, sequences of
# max_length tokens; one-token words of SmolLM2's tokenizer), and it checks that the tokens
# the run's first step forwarded equal the plan's (another tokenizer would not match).
# The process's own memory (libtorch's code and threads, the allocator's arenas) is measured
# once, as the peak of a run of lm-backend's tiny Llama fixture minus that run's estimate, and
# printed beside each error.
#
# Environment: ALIGN (the align binary; default target/debug/align, built when absent),
# PROMPT_TOKENS (16), COUNT (records, 4: enough for 2 steps of 2), ALLOCATORS ("default
# live": `default` is glibc as users run it; `live` sets MALLOC_MMAP_THRESHOLD_=131072 so
# that every freed tensor goes back to the system and the peak follows the live bytes),
# OUT (runs/plan-bench). The runs' model folders are deleted once measured (each holds the
# weights and optimizer state: 1-2 GB for SmolLM2); their metrics.jsonl stay. Set OMP_NUM_THREADS to pin libtorch's threads (memory does not
# depend on it much; time does, on a busy machine).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-runs/plan-bench}
prompt=${PROMPT_TOKENS:-16}
count=${COUNT:-4}
allocators=${ALLOCATORS:-"default live"}
align=${ALIGN:-target/debug/align}
[[ -x "$align" ]] || cargo build -q -p align-cli
mkdir -p "$out"
if [[ $# -eq 0 ]]; then
    set -- scripts/bench/plan/*.toml
fi
if [[ ! -f runs/smollm2-hf/model.safetensors ]]; then
    gguf=$(scripts/fixtures/get_smollm2.sh)
    "$align" convert --from gguf "$gguf" --output runs/smollm2-hf --overwrite >&2
fi

# peak_kib ENV... -- CMD...: runs CMD under /usr/bin/time -v with ENV; prints the max RSS (KiB).
peak_kib() {
    local envs=()
    while [[ $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" /usr/bin/time -v "$@" > "$out/last.log" 2> "$out/last.time" ||
        { cat "$out/last.log" "$out/last.time" >&2; exit 1; }
    awk -F': ' '/Maximum resident set size/ {print $2}' "$out/last.time"
}

alloc_env() {
    case $1 in
        default) ;;
        live) echo "MALLOC_MMAP_THRESHOLD_=131072" ;;
        *) echo "unknown allocator setting $1 (default, live)" >&2; exit 1 ;;
    esac
}

# The process overhead: the tiny fixture's peak minus its estimate, per allocator setting.
tiny=$out/tiny
rm -rf "$tiny" && mkdir -p "$tiny/model"
cp crates/lm-backend/tests/fixtures/llama/{config.json,model.safetensors} "$tiny/model/"
cp crates/lm-backend/tests/fixtures/tokenizer/{tokenizer.json,tokenizer_config.json} "$tiny/model/"
python3 scripts/bench/plan_records.py "$tiny/pairs.jsonl" --max-length 24 --prompt 4 --count "$count"
cat > "$tiny/run.toml" <<EOF
[model]
path = "model"
[data]
train = "pairs.jsonl"
max_length = 256
[[objective]]
kind = "dpo"
[train]
batch_size = 2
max_steps = 2
EOF
tiny_estimate=$("$align" train --config "$tiny/run.toml" --plan --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["plan"]["phases"]["peak"])')
declare -A overhead
for a in $allocators; do
    rm -rf "$tiny/run"
    kib=$(peak_kib $(alloc_env "$a") -- "$align" train --config "$tiny/run.toml" --output "$tiny/run")
    rm -rf "$tiny/run"
    overhead[$a]=$((kib * 1024 - tiny_estimate))
done

echo "before: $(uptime)" >&2
printf '%-22s %-9s %10s %-10s %10s %10s %8s\n' config allocator "plan GiB" phase "peak GiB" "overhead" "error"
for config in "$@"; do
    plan=$("$align" train --config "$config" --plan --json --prompt-tokens "$prompt")
    read -r max_length estimate phase tokens < <(python3 -c '
import json, sys
p = json.loads(sys.argv[1])["plan"]
grad = sum(x["pass"]["tokens"] for x in p["passes"] if x["pass"]["grad"])
print(p["run"]["max_length"], p["phases"]["peak"], p["phases"]["peak_phase"], grad)' "$plan")
    python3 scripts/bench/plan_records.py "$out/pairs.jsonl" --max-length "$max_length" --prompt "$prompt" --count "$count"
    name=$(basename "$config" .toml)
    for a in $allocators; do
        run_dir=$out/$name-$a
        rm -rf "$run_dir"
        kib=$(peak_kib $(alloc_env "$a") -- "$align" train --config "$config" --output "$run_dir")
        rm -rf "$run_dir/final" "$run_dir"/checkpoint-* # 1-2 GB each; only the metrics are read
        forwarded=$(head -n 1 "$run_dir/metrics.jsonl" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["tokens"]))')
        if [[ "$forwarded" != "$tokens" ]]; then
            echo "$config: the first step forwarded $forwarded tokens, the plan $tokens: records of another shape" >&2
            exit 1
        fi
        python3 - "$name" "$a" "$estimate" "$phase" "$((kib * 1024))" "${overhead[$a]}" <<'PY'
import sys
name, alloc, phase = sys.argv[1], sys.argv[2], sys.argv[4]
estimate, measured, overhead = float(sys.argv[3]), float(sys.argv[5]), float(sys.argv[6])
gib = 2 ** 30
model = measured - overhead
print(f"{name:22} {alloc:9} {estimate / gib:10.2f} {phase:10} {measured / gib:10.2f} {overhead / gib:10.2f} "
      f"{100 * (estimate - model) / model:+7.1f}%")
PY
    done
done
echo "after: $(uptime)" >&2
echo "error = (plan - (peak - overhead)) / (peak - overhead); overhead = tiny fixture's peak - its plan" >&2
