"""One training step of a Hugging Face causal LM in PyTorch eager mode, for comparison with
the workspace's `train_step` bench (scripts/bench/train_step.sh).

Usage: python train_step_torch.py MODEL_DIR [--dtype f32|bf16] [--batch 4] [--seq 128]
       [--steps 5] [--threads 2] [--attn eager|sdpa] [--prompt 1] [--gemm 2048]

Forward + backward of `model(input_ids, attention_mask, labels=labels).loss` (transformers'
mean next-token NLL: logits at every position, upcast to float32, shifted cross-entropy) on
random token ids (every position real), gradients zeroed between steps. The labels are the ids
with the first `--prompt P` positions set to -100, so the `T - P` completion tokens are scored
(as a preference or SFT trainer masks the prompt); `P = 1` scores every next token. Step 0 is a warm-up;
the median of the others is reported, with the rate of an n x n x n GEMM in the same dtype
and the FLOP floor 6 * params * tokens / GEMM rate. Prints one JSON object.
"""

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def gemm_rate(n, dtype):
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--attn", default="eager", choices=["eager", "sdpa"])
    p.add_argument("--prompt", type=int, default=1)
    p.add_argument("--gemm", type=int, default=2048)
    a = p.parse_args()
    if not 1 <= a.prompt < a.seq:
        p.error(f"--prompt {a.prompt} must be in 1..{a.seq}")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = torch.float32 if a.dtype == "f32" else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, attn_implementation=a.attn)
    model.train()
    params = sum(t.numel() for t in model.parameters())  # tied weights counted once
    ids = torch.randint(model.config.vocab_size, (a.batch, a.seq))
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, : a.prompt] = -100
    times, loss = [], float("nan")
    for step in range(a.steps + 1):
        model.zero_grad(set_to_none=False)
        start = time.perf_counter()
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        seconds = time.perf_counter() - start
        loss = out.loss.item()
        if step > 0:
            times.append(seconds)
    times.sort()
    median = times[len(times) // 2]
    tokens = a.batch * a.seq
    rate = gemm_rate(a.gemm, dtype)
    floor = 6.0 * params * tokens / rate
    print(
        json.dumps(
            {
                "impl": f"transformers ({a.attn} attention)",
                "dtype": a.dtype,
                "batch": a.batch,
                "seq": a.seq,
                "prompt": a.prompt,
                "threads": a.threads,
                "params": params,
                "step_s_median": median,
                "step_s_all": times,
                "tokens_per_s": tokens / median,
                "loss": loss,
                "gemm_n": a.gemm,
                "gemm_gflops": rate / 1e9,
                "flop_floor_s": floor,
                "floor_fraction": floor / median,
                "torch": torch.__version__,
                "transformers": __import__("transformers").__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
