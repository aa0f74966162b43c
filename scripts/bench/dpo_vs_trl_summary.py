"""Summarises one run of scripts/bench/dpo_vs_trl.sh: per-step rows to a JSONL file and a table.

Usage: python dpo_vs_trl_summary.py --records R.jsonl --model DIR --ours-dpo M.jsonl
       --ours-mlc M.jsonl --trl T.jsonl --gemm G.json [G2.json ...] --runs DIR --out OUT.jsonl
       [--seed 42] [--batch 4] [--steps 6] [--layer 15] [--languages en,zh,...]

Inputs: the records, the model folder (tokenizer.json, tokenizer_config.json, config.json,
model.safetensors), `metrics.jsonl` of our DPO run and of our DPO + MLC run, the per-step rows
of dpo_step_trl.py, the JSON printed by `cargo bench --bench train_step -- --gemm-only` (one
or more measurements: the highest f32 rate is used), and
in --runs the exit status (NAME.status) and peak resident memory in KiB (NAME.rss, GNU time)
of each run, NAME = ours-dpo, trl, ours-mlc. A run that failed or logged no steps is reported
as such; the others are still summarised.

Per step and implementation:
- tokens/s = `tokens` / `step_time_s`; `tokens` is the step's work in tokens: each pair's
  chosen and rejected sequence, each with its prompt and EOS (TRL: its tokenisation of the
  same pairs; ours: the records by our data contract, checked against metrics.jsonl, whose
  `tokens` is what was forwarded: the same when padded, a pair's prompt once when packed). The reported rate is the median over the steps after the first; the best step's
  rate is given too, as a check on noise from other work on the machine (both sides train on
  the same pairs at each step, so the per-step ratio ours/TRL is printed as well), and the
  pooled rate (sum of tokens / sum of step times over the steps after the first), which a
  single disturbed step moves less than the median of 5 unlike batches.
- Our token count is also predicted here from the records with the SmolLM2 tokenizer by our
  data contract (prompt encoded with the tokenizer's special tokens, completion without,
  plus the EOS), in the order `align train` visits the records (data_order.py). A mismatch
  with metrics.jsonl means the copy of the data order or of the contract is stale: reported.
- DPO + MLC: `tokens` of metrics.jsonl also holds the language-variant prompts that go
  through the prompt-only pass, which stops at the MLC layer. Variant tokens = the tokenised
  non-dominant prompts of the step's records; the effective rate is
  (DPO tokens + variant tokens * layer / num_hidden_layers) / step time.
- Columns of the per-step table: `ours#` our contract's count (above), `variant` the variant
  prompt tokens, `padded` the positions of the right-padded chosen + rejected pass
  (2 * batch * longest sequence), `var pad` those of the padded prompt-only pass.
- FLOP floor = 6 * params * tokens / GEMM rate (for DPO + MLC the effective tokens); params =
  every tensor of model.safetensors (embeddings included, the tied input/output embedding
  once); the floor fraction is floor / step time. It is a nominal bound: both trainers skip
  some of that work (no vocabulary projection at prompt positions on our side).
"""

import argparse
import json
import statistics
import struct
import sys
from pathlib import Path

from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_order import step_records  # noqa: E402


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def safetensors_params(path):
    """Number of parameters stored in a .safetensors file (from its JSON header)."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for d in info["shape"]:
            n *= d
        total += n
    return total


class OurEncoding:
    """Token counts by the data contract of crates/align-train/src/encode.rs (plain text)."""

    def __init__(self, model_dir):
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
        eos = config.get("eos_token")
        eos = eos.get("content") if isinstance(eos, dict) else eos
        if eos is None or self.tok.token_to_id(eos) is None:
            sys.exit(f"{model_dir}: no EOS token in tokenizer_config.json")

    def prompt(self, text):
        return len(self.tok.encode(text, add_special_tokens=True).ids)

    def completion(self, text):
        return len(self.tok.encode(text, add_special_tokens=False).ids) + 1  # + EOS

    def pair_tokens(self, record, dominant):
        """Chosen and rejected sequence, each with the prompt: 2 * prompt + chosen + rejected."""
        p = self.prompt(record["prompt"][dominant])
        return 2 * p + self.completion(record["chosen"]) + self.completion(record["rejected"])

    def longest_sequence(self, record, dominant):
        p = self.prompt(record["prompt"][dominant])
        return p + max(self.completion(record["chosen"]), self.completion(record["rejected"]))

    def variant_lengths(self, record, languages):
        return [self.prompt(record["prompt"][lang]) for lang in languages[1:] if lang in record["prompt"]]


def median_after_first(values):
    return statistics.median(values[1:]) if len(values) > 1 else float("nan")


def best_after_first(values):
    return max(values[1:]) if len(values) > 1 else float("nan")


def pooled_after_first(tokens, seconds):
    return sum(tokens[1:]) / sum(seconds[1:]) if len(seconds) > 1 else float("nan")


def run_facts(runs, name):
    """Exit status and peak RSS (GiB) of one run, None where not recorded."""
    status = runs / f"{name}.status"
    rss = runs / f"{name}.rss"
    code = int(status.read_text().strip()) if status.is_file() else None
    peak = None
    if rss.is_file():
        last = rss.read_text().strip().splitlines()[-1:]  # GNU time puts a signal note first
        if last and last[0].isdigit():
            peak = int(last[0]) / 2**20
    return {"exit_status": code, "peak_rss_gib": peak}


IMPLS = ["polyalign dpo", "trl dpo", "polyalign dpo+mlc"]
RUN_NAMES = {"polyalign dpo": "ours-dpo", "trl dpo": "trl", "polyalign dpo+mlc": "ours-mlc"}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ["records", "model", "ours-dpo", "ours-mlc", "trl", "runs", "out"]:
        p.add_argument(f"--{name}", type=Path, required=True)
    p.add_argument("--gemm", type=Path, nargs="+", required=True)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--layer", type=int, default=15)
    p.add_argument("--languages", default="en,zh,it,vi,ar,ko,th,bn,sw,jv")
    a = p.parse_args()

    records = read_jsonl(a.records)
    languages = a.languages.split(",")
    dominant = languages[0]
    order = step_records(len(records), a.seed, a.batch, 1, a.steps)
    enc = OurEncoding(a.model)
    layers = json.loads((a.model / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"]
    params = safetensors_params(a.model / "model.safetensors")
    gemms = [json.loads(g.read_text(encoding="utf-8")) for g in a.gemm]
    gemm = max(gemms, key=lambda g: g["f32_gflops"])
    rate = gemm["f32_gflops"] * 1e9
    logs = {
        impl: read_jsonl(path) if path.is_file() else []
        for impl, path in zip(IMPLS, [a.ours_dpo, a.trl, a.ours_mlc])
    }

    rows, problems = [], []
    for impl in IMPLS:
        lines = logs[impl]
        facts = run_facts(a.runs, RUN_NAMES[impl])
        if facts["exit_status"] not in (None, 0):
            problems.append(f"{impl}: the run failed with exit status {facts['exit_status']}"
                            + (" (137: killed, e.g. by the kernel's OOM killer)" if facts["exit_status"] == 137
                               else " (its log above says why, e.g. an allocation over MEM_LIMIT_GIB)"))
        elif facts["exit_status"] is None:
            problems.append(f"{impl}: no exit status recorded (the run did not finish)")
        if len(lines) != a.steps:
            problems.append(f"{impl}: {len(lines)} steps logged, {a.steps} expected")
        for line in lines:
            step = int(line["step"])
            batch = [records[i] for i in order[step - 1]]
            predicted = sum(enc.pair_tokens(r, dominant) for r in batch)
            lengths = [n for r in batch for n in enc.variant_lengths(r, languages)] if impl.endswith("mlc") else []
            variants = sum(lengths)
            forwarded = int(line["tokens"])
            seconds = float(line["step_time_s"])
            tokens = forwarded
            if impl.startswith("polyalign"):
                # The same work is counted the same way on both sides: each pair's chosen and
                # rejected sequence with its prompt (plus, for MLC, the variant prompts), as the
                # records give it. Padded, metrics.jsonl forwards exactly that; packed, a pair's
                # prompt is forwarded once, so metrics.jsonl counts fewer tokens for the same work.
                tokens = predicted + variants
                shared = sum(enc.prompt(r["prompt"][dominant]) for r in batch)
                if forwarded not in (tokens, tokens - shared):
                    problems.append(
                        f"{impl} step {step}: metrics.jsonl has {forwarded} tokens, the records in the predicted "
                        f"order give {tokens} padded or {tokens - shared} packed (data_order.py or the "
                        "encoding contract is stale)"
                    )
            dpo_tokens = tokens - variants
            effective = dpo_tokens + variants * a.layer / layers
            floor = 6.0 * params * effective / rate
            rows.append({
                "row": "step",
                "impl": impl,
                "step": step,
                "records": order[step - 1],
                "step_time_s": seconds,
                "tokens": tokens,
                "tokens_forwarded": forwarded,
                "tokens_our_contract": predicted,
                "variant_prompt_tokens": variants,
                "effective_tokens": effective,
                "padded_positions": 2 * a.batch * max(enc.longest_sequence(r, dominant) for r in batch),
                "variant_padded_positions": len(lengths) * max(lengths, default=0),
                "tokens_per_s": tokens / seconds,
                "effective_tokens_per_s": effective / seconds,
                "loss": line.get("loss/dpo", line.get("loss")),
                "loss_total": line.get("loss"),
                "flop_floor_s": floor,
                "floor_fraction": floor / seconds,
            })

    def col(impl, key):
        return [r[key] for r in rows if r["impl"] == impl]

    summary = {"row": "summary", "params": params, "layers": layers, "mlc_layer": a.layer,
               "mlc_languages": languages, "gemm_f32_gflops": gemm["f32_gflops"],
               "gemm_f32_gflops_all": [g["f32_gflops"] for g in gemms],
               "gemm_n": gemm.get("gemm_n"), "threads": gemm.get("threads"), "problems": problems}
    for impl in IMPLS:
        summary[impl] = {
            **run_facts(a.runs, RUN_NAMES[impl]),
            "steps_logged": len(col(impl, "step")),
            "step_time_s_median": median_after_first(col(impl, "step_time_s")),
            "tokens_per_s_median": median_after_first(col(impl, "tokens_per_s")),
            "tokens_per_s_best": best_after_first(col(impl, "tokens_per_s")),
            "effective_tokens_per_s_median": median_after_first(col(impl, "effective_tokens_per_s")),
            "effective_tokens_per_s_best": best_after_first(col(impl, "effective_tokens_per_s")),
            "tokens_per_s_pooled": pooled_after_first(col(impl, "tokens"), col(impl, "step_time_s")),
            "effective_tokens_per_s_pooled": pooled_after_first(col(impl, "effective_tokens"),
                                                                col(impl, "step_time_s")),
            "floor_fraction_median": median_after_first(col(impl, "floor_fraction")),
            "tokens_per_step": col(impl, "tokens"),
            "step1_loss": (col(impl, "loss") or [None])[0],
        }
    ours, ref, mlc = (summary[impl] for impl in IMPLS)
    per_step = [o / t for o, t in zip(col("polyalign dpo", "tokens_per_s"), col("trl dpo", "tokens_per_s"))]
    summary["dpo_ratio_ours_over_trl"] = ours["tokens_per_s_median"] / ref["tokens_per_s_median"]
    summary["dpo_ratio_ours_over_trl_best"] = ours["tokens_per_s_best"] / ref["tokens_per_s_best"]
    summary["dpo_ratio_ours_over_trl_per_step"] = per_step
    summary["mlc_effective_over_dpo"] = mlc["effective_tokens_per_s_median"] / ours["tokens_per_s_median"]
    summary["mlc_effective_over_dpo_best"] = mlc["effective_tokens_per_s_best"] / ours["tokens_per_s_best"]
    summary["dpo_ratio_ours_over_trl_pooled"] = ours["tokens_per_s_pooled"] / ref["tokens_per_s_pooled"]
    summary["mlc_effective_over_dpo_pooled"] = (
        mlc["effective_tokens_per_s_pooled"] / ours["tokens_per_s_pooled"]
    )

    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as out:
        for r in rows + [summary]:
            out.write(json.dumps(r) + "\n")
    print_table(a, rows, summary, per_step)


def number(value, fmt):
    return format(value, fmt) if isinstance(value, (int, float)) and value == value else "-"


def print_table(a, rows, summary, per_step):
    print(f"\nper step ({a.out}):")
    print(f"{'impl':18} {'step':>4} {'time s':>7} {'tokens':>6} {'ours#':>6} {'variant':>7} "
          f"{'padded':>6} {'var pad':>7} {'tok/s':>7} {'eff tok/s':>9} {'floor %':>7} {'loss':>8}")
    for r in rows:
        print(f"{r['impl']:18} {r['step']:4} {r['step_time_s']:7.2f} {r['tokens']:6} "
              f"{r['tokens_our_contract']:6} {r['variant_prompt_tokens']:7} {r['padded_positions']:6} "
              f"{r['variant_padded_positions']:7} "
              f"{r['tokens_per_s']:7.1f} {r['effective_tokens_per_s']:9.1f} {100 * r['floor_fraction']:6.1f}% "
              f"{number(r['loss'], '8.4f')}")
    print(f"\nmedians over steps 2..{a.steps} (best step; pooled: sum of tokens / sum of times); params {summary['params']:,} (all "
          f"tensors of model.safetensors, the tied embedding once); GEMM {summary['gemm_f32_gflops']:.1f} GF/s "
          f"f32 ({summary['gemm_n']}^3, {summary['threads']} threads; the highest of "
          f"{', '.join(f'{g:.1f}' for g in summary['gemm_f32_gflops_all'])}); MLC layer {a.layer} of "
          f"{summary['layers']}, languages {','.join(summary['mlc_languages'])}")
    print("| | step (s) | tokens/s (best; pooled) | effective tokens/s (best; pooled) | FLOP-floor fraction "
          "| step-1 loss | peak RSS (GiB) |")
    print("|---|---|---|---|---|---|---|")
    for impl in IMPLS:
        s = summary[impl]
        if not s["steps_logged"]:
            what = "did not finish" if s["exit_status"] is None else f"failed (exit {s['exit_status']})"
            print(f"| {impl} | {what} | | | | | {number(s['peak_rss_gib'], '.1f')} |")
            continue
        eff = (f"{number(s['effective_tokens_per_s_median'], '.1f')} "
               f"({number(s['effective_tokens_per_s_best'], '.1f')}; "
               f"{number(s['effective_tokens_per_s_pooled'], '.1f')})") if impl.endswith("mlc") else ""
        print(f"| {impl} | {number(s['step_time_s_median'], '.2f')} | "
              f"{number(s['tokens_per_s_median'], '.1f')} ({number(s['tokens_per_s_best'], '.1f')}; "
              f"{number(s['tokens_per_s_pooled'], '.1f')}) | {eff} | "
              f"{number(100 * s['floor_fraction_median'], '.1f')}% | {number(s['step1_loss'], '.4f')} | "
              f"{number(s['peak_rss_gib'], '.1f')} |")
    print(f"\nDPO tokens/s, polyalign / TRL 1.16: {number(summary['dpo_ratio_ours_over_trl'], '.2f')}x "
          f"(best steps: {number(summary['dpo_ratio_ours_over_trl_best'], '.2f')}x; pooled: "
          f"{number(summary['dpo_ratio_ours_over_trl_pooled'], '.2f')}x; per step, same pairs: "
          f"{', '.join(number(x, '.2f') for x in per_step)})")
    print(f"DPO + MLC effective tokens/s / DPO tokens/s (polyalign): "
          f"{number(summary['mlc_effective_over_dpo'], '.2f')}x "
          f"(best steps: {number(summary['mlc_effective_over_dpo_best'], '.2f')}x; pooled: "
          f"{number(summary['mlc_effective_over_dpo_pooled'], '.2f')}x)")
    ours, trl = summary["polyalign dpo"]["tokens_per_step"], summary["trl dpo"]["tokens_per_step"]
    if ours != trl:
        print(f"token counts per step differ: polyalign {ours}, TRL {trl}")
    else:
        print("token counts per step: polyalign and TRL count the same tokens")
    for problem in summary["problems"]:
        print(f"WARNING: {problem}")


if __name__ == "__main__":
    main()
