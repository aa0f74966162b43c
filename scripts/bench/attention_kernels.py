"""Attention alone, forward + backward, on the CPU with libtorch 2.11 (the version the workspace
builds against): the eager computation against scaled_dot_product_attention with a boolean
mask or `is_causal`, keys/values repeated per query head or passed grouped (`enable_gqa`).
Also checks what the fused kernel returns for a query that sees no key. The choices of
lm_backend::attention (docs/decisions.md, "Attention: the fused kernel by default") rest on
these numbers. Prints one line per shape with the median of REPS timed runs (seconds).

Usage: attention_kernels.py [--threads 2] [--reps 7] [--dtype f32|bf16]
"""

import argparse
import time

import torch
import torch.nn.functional as F


def median_time(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def fully_masked_row():
    """Whether a query with no visible key gives NaN outputs or gradients."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, generator=g, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool).tril()
    mask[1] = False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out.sum().backward()
    nan = out.isnan().any().item() or any(t.grad.isnan().any().item() for t in (q, k, v))
    return f"fully masked row: NaN {nan}, |output| max {out[1].abs().max().item():.3g}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.float32 if a.dtype == "f32" else torch.bfloat16
    print(f"torch {torch.__version__}, {a.threads} threads, {a.dtype}; {fully_masked_row()}")
    print(f"{'B, H, KV, T, hd':>22} {'eager':>7} {'rep+mask':>9} {'gqa+mask':>9} {'rep+causal':>11} {'gqa+causal':>11}")
    g = torch.Generator().manual_seed(1)
    for b, h, kv, t, hd in [(8, 9, 3, 128, 64), (8, 9, 3, 512, 64), (8, 9, 3, 1024, 64), (1, 9, 3, 4096, 64)]:
        q = torch.randn(b, h, t, hd, generator=g).to(dtype).requires_grad_()
        k = torch.randn(b, kv, t, hd, generator=g).to(dtype).requires_grad_()
        v = torch.randn(b, kv, t, hd, generator=g).to(dtype).requires_grad_()
        mask = torch.ones(b, 1, t, t, dtype=torch.bool).tril()
        groups = h // kv

        def eager():
            kk, vv = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
            s = (q @ kk.transpose(2, 3)) * hd**-0.5
            s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
            (s.softmax(-1, dtype=torch.float32).to(dtype) @ vv).sum().backward()

        def fused(causal, gqa):
            def run():
                kk, vv = (k, v) if gqa else (k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1))
                m = None if causal else mask
                F.scaled_dot_product_attention(q, kk, vv, attn_mask=m, is_causal=causal, enable_gqa=gqa).sum().backward()

            return run

        runs = [eager, fused(False, False), fused(False, True), fused(True, False), fused(True, True)]
        times = [median_time(r, a.reps) for r in runs]
        print(f"{str((b, h, kv, t, hd)):>22} " + " ".join(f"{x:9.3f}" for x in times), flush=True)


if __name__ == "__main__":
    main()
