"""Writes synthetic preference records for the throughput benchmarks (gpu_scale.sh,
multi_gpu.sh, data_parallel.sh): random words, so only their lengths matter.

Usage: python synthetic_pairs.py OUTPUT.jsonl COUNT TOKENS LANGUAGES

Record i (`id` = "r<i>"): a prompt in the first LANGUAGES of en de sw bn th zh ar ru (each
"[tag] " and about TOKENS / 2 tokens of the fixture tokenizer, which is byte-level BPE at
about 2 characters a token), and English chosen and rejected completions of the same length.
Seeded, so every run writes the same file. Needs only the standard library.
"""

import json
import random
import sys

WORDS = "the model should refuse a harmful request in every language and help with benign ones".split()
TAGS = ["en", "de", "sw", "bn", "th", "zh", "ar", "ru"]


def main():
    path, count, tokens, languages = sys.argv[1], *map(int, sys.argv[2:5])
    rng = random.Random(0)

    def text(n):
        return " ".join(rng.choice(WORDS) for _ in range(n // 2))

    with open(path, "w") as f:
        for i in range(count):
            prompt = {t: f"[{t}] " + text(tokens // 2) for t in TAGS[:languages]}
            record = {"id": f"r{i}", "prompt": prompt, "chosen": text(tokens // 2), "rejected": text(tokens // 2)}
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
