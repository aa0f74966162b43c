"""Writes preference records of an exact token shape for scripts/bench/plan_vs_measured.sh,
so that a measured run has the record lengths its memory plan assumes.

Usage: python plan_records.py OUTPUT.jsonl --max-length L --prompt P [--count 8]

Every record has the same shape: the English prompt is P words, the German and French
prompt variants P words each, and the chosen and rejected completions L - P - 1 words, to
which the trainer appends the EOS token (L - P scored tokens, sequences of exactly L tokens).
The words (" the", " cat", " dog", " Hello", " world") are one token each in
SmolLM2-135M-Instruct's tokenizer (which adds no BOS); the script that uses these records
checks the tokens a step forwards against the plan's passes, so another tokenizer is caught.

Needs only the standard library, so it runs with any python3.
"""

import argparse
import json


def words(word, n):
    return word * n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output")
    ap.add_argument("--max-length", type=int, required=True)
    ap.add_argument("--prompt", type=int, required=True)
    ap.add_argument("--count", type=int, default=8)
    args = ap.parse_args()
    completion = args.max_length - args.prompt - 1
    if args.prompt < 1 or completion < 1:
        raise SystemExit(f"--prompt {args.prompt} leaves no completion within --max-length {args.max_length}")
    with open(args.output, "w", encoding="utf-8") as out:
        for i in range(args.count):
            record = {
                "id": f"plan-{i}",
                "prompt": {"en": words(" the", args.prompt), "de": words(" cat", args.prompt),
                           "fr": words(" dog", args.prompt)},
                "chosen": words(" Hello", completion),
                "rejected": words(" world", completion),
            }
            out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
