"""TRL 1.16's DPOTrainer on the benchmark records, timed per optimizer step: the Python side of
scripts/bench/dpo_vs_trl.sh (run it through that script, with the .venv-bench python).

Usage: python dpo_step_trl.py MODEL_DIR RECORDS.jsonl OUTPUT.jsonl [--steps 6] [--batch 4]
       [--beta 0.1] [--lr 1e-6] [--seed 42] [--threads 2] [--work DIR]

What it runs, set up to do the same work as `align train` with kind = "dpo":
- data: each record's English prompt (`prompt.en`) with its `chosen` / `rejected`, as plain
  text columns; the rows are laid out in the order `align train` visits the records
  (data_order.py: its seeded shuffle per epoch), and TRL reads them with a sequential sampler,
  so step k of both trains on the same 4 pairs;
- DPO sigmoid loss, beta as given, reference log-probs precomputed before training
  (`precompute_ref_log_probs=True`, as our reference cache), float32 (`bf16=False`; TRL
  defaults to bf16), no gradient checkpointing (TRL defaults to it; we do not checkpoint),
  AdamW, constant learning rate, no warm-up, clipping at 1.0, no truncation
  (`max_length=None`), transformers' default attention (sdpa), the CPU, `torch.set_num_threads`;
- timing: a TrainerCallback takes the time between `on_step_begin` and `on_step_end` of each
  optimizer step (forward, backward, clipping, AdamW; the batch is collated before);
- tokens per step: TRL's own tokenisation of the step's pairs, counted as `align train` counts
  them: the non-padding tokens of the chosen and the rejected sequence (each holds the prompt),
  2 * prompt + chosen + rejected, with the EOS TRL appends.

Writes one JSON object per step to OUTPUT (`impl`, `step`, `step_time_s`, `tokens`, `loss`,
`records`, `threads`: torch's intra-op threads during the step), where `loss` is TRL's logged training loss of that step (computed before the
step's update, so ln 2 at step 1: policy = reference).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import DPOConfig, DPOTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_order import step_records  # noqa: E402


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step and the loss TRL logs for it."""

    def __init__(self):
        self.times, self.losses, self.threads, self._start = [], {}, [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self.threads.append(torch.get_num_threads())  # as the step runs (nothing may reset it)
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses[state.global_step] = logs["loss"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("records", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=None, help="TRL's output_dir (default: a temporary folder)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    records = [json.loads(line) for line in a.records.read_text(encoding="utf-8").splitlines() if line.strip()]
    order = step_records(len(records), a.seed, a.batch, 1, a.steps)
    rows = [
        {"prompt": records[i]["prompt"]["en"], "chosen": records[i]["chosen"], "rejected": records[i]["rejected"]}
        for step in order
        for i in step
    ]

    tokenizer = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    work = a.work or Path(tempfile.mkdtemp(prefix="dpo-trl-"))
    config = DPOConfig(
        output_dir=str(work),
        per_device_train_batch_size=a.batch,
        gradient_accumulation_steps=1,
        max_steps=a.steps,
        learning_rate=a.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=a.beta,
        loss_type=["sigmoid"],
        precompute_ref_log_probs=True,
        max_length=None,
        bf16=False,
        fp16=False,
        activation_checkpointing=False,  # TRL's `gradient_checkpointing` defaults to True
        use_cpu=True,
        train_sampling_strategy="sequential",
        dataloader_num_workers=0,
        seed=a.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    timer = StepTimer()
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[timer],
    )
    prepared = trainer.train_dataset  # tokenised by TRL, reference log-probs attached, same order
    trainer.train()

    with open(a.output, "w", encoding="utf-8") as out:
        for step, seconds in enumerate(timer.times, start=1):
            batch = prepared.select(range((step - 1) * a.batch, step * a.batch))
            tokens = sum(
                2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in batch
            )
            row = {
                "impl": "trl",
                "step": step,
                "step_time_s": seconds,
                "tokens": tokens,
                "loss": timer.losses.get(step),
                "records": order[step - 1],
                "threads": timer.threads[step - 1],
            }
            out.write(json.dumps(row) + "\n")
    print(f"dpo_step_trl: {len(timer.times)} steps in {a.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
