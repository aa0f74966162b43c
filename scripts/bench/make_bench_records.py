"""Writes the records of the DPO-against-TRL benchmark (scripts/bench/dpo_vs_trl.sh) from the
shared data folder, at bench time: the data is never copied into the project.

Usage: python make_bench_records.py OUTPUT.jsonl [--shared DIR] [--count 16]

Record i (0-based, `id` = "bench-i"), one JSON object per line:
- `prompt`: an object mapping each of MultiJail's 10 languages (en zh it vi ar ko th bn sw jv,
  English first) to row i's prompt in that language (MultiJail.csv);
- `chosen` / `rejected`: the English `source_chosen` / `source_rejected` of the MPO pairs
  (mpo_llama_pairs.json, 6 rows per English prompt, one per target language, all with the
  same English pair): one row per distinct English prompt, in file order, the i-th of them.
All texts are plain strings, not chat messages. The MPO English prompt is not used: the
preference pair only gives the benchmark realistic completion lengths, and the MultiJail
prompt gives it ten real language variants for MLC.

Needs only the standard library, so it runs with any python3.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

LANGUAGES = ["en", "zh", "it", "vi", "ar", "ko", "th", "bn", "sw", "jv"]


def multijail_prompts(path, count):
    """The first `count` rows of MultiJail.csv, each as {language: prompt}."""
    # UTF-8 with a byte-order mark, quoted fields that span lines: the csv module, newline="".
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [lang for lang in LANGUAGES if lang not in rows[0]]
    if missing:
        sys.exit(f"{path}: no column for {missing}; expected id,source,tags,{','.join(LANGUAGES)}")
    if len(rows) < count:
        sys.exit(f"{path}: {len(rows)} rows, {count} needed")
    return [{lang: rows[i][lang] for lang in LANGUAGES} for i in range(count)]


def mpo_english_pairs(path, count):
    """(chosen, rejected) of the first `count` distinct English prompts of the MPO pairs."""
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)
    pairs, seen = [], set()
    for row in rows:
        prompt = row["source_conversations"][0]["value"]
        if prompt in seen:
            continue
        seen.add(prompt)
        pairs.append((row["source_chosen"]["value"], row["source_rejected"]["value"]))
        if len(pairs) == count:
            return pairs
    sys.exit(f"{path}: {len(pairs)} distinct English prompts, {count} needed")


def main():
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output", type=Path)
    p.add_argument("--shared", type=Path, default=here.parents[2] / "shared",
                   help="the shared folder beside the checkout (default: ../shared from the repository root)")
    p.add_argument("--count", type=int, default=16)
    a = p.parse_args()
    data = a.shared / "data"
    needed = [data / "MultiJail.csv", data / "mpo_llama_pairs.json"]
    absent = [str(f) for f in needed if not f.is_file()]
    if absent:
        sys.exit(
            f"make_bench_records: {', '.join(absent)} not found. The benchmark reads the shared data "
            f"folder beside the checkout (../shared/data); pass --shared DIR (or SHARED=DIR to "
            f"dpo_vs_trl.sh) where it is elsewhere."
        )
    prompts = multijail_prompts(needed[0], a.count)
    pairs = mpo_english_pairs(needed[1], a.count)
    a.output.parent.mkdir(parents=True, exist_ok=True)
    with open(a.output, "w", encoding="utf-8") as out:
        for i, (prompt, (chosen, rejected)) in enumerate(zip(prompts, pairs)):
            record = {"id": f"bench-{i}", "prompt": prompt, "chosen": chosen, "rejected": rejected}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"make_bench_records: {a.count} records in {a.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
