//! The plan as a readable table (what `align train --plan` prints).

use super::fit::{headroom_percent, required_bytes, Fit, HEADROOM_FIXED};
use super::size::format_gib;
use super::MemoryPlan;
use std::fmt::Write;

/// `n` with thousands separators, e.g. `134,515,008`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes for the table: GiB, MiB below 100 MiB, plain bytes below 1 MiB.
fn bytes(b: u64) -> String {
    if b > 0 && b < 1 << 20 {
        format!("{b} B")
    } else if b > 0 && b < 100 << 20 {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    } else {
        format_gib(b)
    }
}

/// Renders `plan` (and its check against a device, when given) as text; `source` names where
/// the model config came from.
pub fn render_table(plan: &MemoryPlan, fit: Option<&Fit>, source: &str) -> String {
    let mut o = String::new();
    write_header(&mut o, plan, source);
    write_passes(&mut o, plan);
    write_terms(&mut o, plan);
    write_variants(&mut o, plan);
    if let Some(fit) = fit {
        write_fit(&mut o, plan, fit);
    } else {
        let percent = headroom_percent(&plan.run.device);
        let needed = required_bytes(plan.phases.peak, percent);
        let _ = writeln!(
            o,
            "\ndevice needs   {} (peak + {percent}% + {} headroom); pass --device-memory SIZE to check a device",
            format_gib(needed),
            format_gib(HEADROOM_FIXED)
        );
    }
    o
}

fn write_header(o: &mut String, plan: &MemoryPlan, source: &str) {
    let (m, r, p) = (&plan.model, &plan.run, &plan.model.params);
    let _ = writeln!(o, "memory plan (no weights loaded; model shapes from {source})");
    let output = if p.output == 0 { "tied output".to_string() } else { format!("output {}", thousands(p.output)) };
    let _ = writeln!(
        o,
        "model          {}, {} parameters (embedding {}, {output}, {} layers x {}, final norm {})",
        m.architecture,
        thousands(p.total),
        thousands(p.embedding),
        p.layers,
        thousands(p.per_layer),
        p.final_norm
    );
    if let Some(rp) = m.reference_params {
        let _ = writeln!(o, "reference      another folder, {} parameters", thousands(rp));
    }
    let tuning = match &r.lora {
        Some(l) => format!(
            "LoRA r = {} on {} ({} adapter parameters)",
            l.r,
            l.target_modules.join(", "),
            thousands(l.adapter_params)
        ),
        None => "full fine-tune".into(),
    };
    let _ = writeln!(
        o,
        "run            {} on {}, attention {} (layers use {}), {}, gradient checkpointing {}, {tuning}",
        r.dtype,
        r.device,
        r.attention,
        r.attention_used,
        if r.packing { "packed rows" } else { "padded rows" },
        if r.gradient_checkpointing { "on" } else { "off" },
    );
    let _ = writeln!(
        o,
        "batch          {} records per micro-batch, grad_accum {}, {} language(s)",
        r.batch_size, r.grad_accum, r.languages
    );
    if r.world_size > 1 {
        let state =
            if r.shard_optimizer { "optimizer state sharded (ZeRO-1)" } else { "optimizer state on every process" };
        let _ =
            writeln!(o, "processes      {} (data-parallel; every figure below is per process), {state}", r.world_size);
    }
    let s = r.shape;
    let how = if r.worst_case {
        format!("worst case that max_length = {} allows (record lengths are not read)", r.max_length)
    } else {
        format!("stated with --prompt-tokens (max_length = {})", r.max_length)
    };
    let _ = writeln!(
        o,
        "record shape   prompt {}, each completion {}, each prompt variant {} tokens: {how}",
        s.prompt, s.completion, s.variant_prompt
    );
    match r.records {
        Some(n) => {
            let _ = writeln!(o, "records        {n} in the data files");
        }
        None => {
            let _ =
                writeln!(o, "records        not counted (data files not found); the reference cache is 20 bytes each");
        }
    }
}

fn write_passes(o: &mut String, plan: &MemoryPlan) {
    let _ = writeln!(o, "\npasses of one micro-batch (all alive until its backward)");
    let _ = writeln!(o, "  {:<32} {:>8} {:>7} {:>11} {:>14}", "pass", "tokens", "layers", "logit rows", "kept");
    for p in plan.passes.iter().chain(&plan.setup_pass) {
        let kept = if p.pass.grad {
            bytes(p.bytes.activations + p.bytes.logits)
        } else {
            format!("{} peak", bytes(p.bytes.layer + p.bytes.shared))
        };
        let name = if p.pass.grad { p.pass.name.clone() } else { format!("{} (no grad)", p.pass.name) };
        let _ = writeln!(
            o,
            "  {:<32} {:>8} {:>7} {:>11} {:>14}",
            name, p.pass.tokens, p.pass.layers, p.pass.predicting, kept
        );
    }
}

fn write_terms(o: &mut String, plan: &MemoryPlan) {
    let (t, r, p) = (&plan.terms, &plan.run, &plan.model.params);
    let dtype_bytes = if r.dtype == "bf16" { 2 } else { 4 };
    let trained = if r.lora.is_some() { "adapter" } else { "trained" };
    let rows: Vec<(&str, u64, String)> = vec![
        ("weights", t.weights, format!("{} parameters x {dtype_bytes} bytes ({})", thousands(p.total), r.dtype)),
        (
            "gradients",
            t.gradients,
            match r.shard_optimizer {
                true => {
                    format!("one per {trained} parameter, and this process's 1/{} of them summed, f32", r.world_size)
                }
                false => format!("one per {trained} parameter"),
            },
        ),
        (
            "optimizer state",
            t.optimizer_state,
            match r.shard_optimizer {
                true => format!("AdamW m and v, f32, this process's 1/{} (sharded)", r.world_size),
                false => "AdamW m and v, f32".into(),
            },
        ),
        (
            "master weights",
            t.master_weights,
            match r.shard_optimizer {
                true => format!("f32 copies of trained bf16 parameters, this process's 1/{}", r.world_size),
                false => "f32 copies of trained bf16 parameters".into(),
            },
        ),
        (
            "reference model (training)",
            t.reference_model,
            if t.reference_model > 0 { "kept for MPO's retain states" } else { "not kept during training" }.into(),
        ),
        (
            "reference model (setup)",
            t.reference_model_setup,
            if t.reference_model_setup > 0 {
                "loaded to compute the reference cache, then dropped"
            } else if r.lora.is_some() {
                "not loaded (LoRA: the base with adapters off)"
            } else {
                "not loaded (no term reads reference log-probs)"
            }
            .into(),
        ),
        ("reference cache", t.reference_cache, "20 bytes per record, host memory".into()),
        ("MLC heads", t.objective_heads, "f32 weights, gradients, m, v".into()),
        ("activations", t.activations, "decoder layers, masks, rotary tables".into()),
        ("logits", t.logits, "final norm, projection input, f32 logits".into()),
        ("MPO retain states", t.retain_states, "frozen reference pass and [B, T, D] states".into()),
        ("backward transient", t.backward_transient, "max(layer working set, logits backward)".into()),
        ("optimizer-step transient", t.optimizer_transient, "f32 temporaries on the largest trained tensor".into()),
        ("setup forward", t.setup_forward, "reference-cache pass: one layer and logits buffers".into()),
        ("weights file (CPU)", t.weights_file_mapping, "mapped while it loads".into()),
    ];
    let _ = writeln!(o, "\n  {:<28} {:>12}  note", "term", "bytes");
    for (name, b, note) in rows {
        let _ = writeln!(o, "  {name:<28} {:>12}  {note}", bytes(b));
    }
    if let Some(l) = &r.lora {
        let _ = writeln!(
            o,
            "  {:<28} {:>12}  adapters' weights, gradients, m, v (in the rows above)",
            "LoRA share",
            bytes(l.adapter_bytes)
        );
    }
    let ph = &plan.phases;
    let _ = writeln!(
        o,
        "\nphases         setup {} | step {} | optimizer {}",
        format_gib(ph.setup),
        format_gib(ph.step),
        format_gib(ph.optimizer)
    );
    let _ = writeln!(o, "peak           {} ({})", format_gib(ph.peak), ph.peak_phase);
}

fn write_variants(o: &mut String, plan: &MemoryPlan) {
    let _ = writeln!(o, "\nactivations of a step (kept + logits + backward transient) by setting");
    let _ = writeln!(o, "  {:<14} {:<9} {:<7} {:>12}", "checkpointing", "attention", "rows", "bytes");
    for v in &plan.activation_variants {
        let _ = writeln!(
            o,
            "  {:<14} {:<9} {:<7} {:>12}{}",
            if v.gradient_checkpointing { "on" } else { "off" },
            v.attention,
            if v.packing { "packed" } else { "padded" },
            format_gib(v.bytes),
            if v.current { "  <- this config" } else { "" }
        );
    }
}

fn write_fit(o: &mut String, plan: &MemoryPlan, fit: &Fit) {
    let verdict = if fit.fits { "fits" } else { "does NOT fit" };
    let _ = writeln!(
        o,
        "\ndevice         {} ({} bytes): needs {} (peak + {}% + {} headroom): {verdict}",
        format_gib(fit.device_bytes),
        thousands(fit.device_bytes),
        format_gib(fit.required_bytes),
        fit.headroom_percent,
        format_gib(HEADROOM_FIXED)
    );
    if !fit.single_switches.is_empty() {
        let _ = writeln!(o, "each switch alone (peak, was {}):", format_gib(plan.phases.peak));
        for (s, peak) in &fit.single_switches {
            let _ = writeln!(o, "  {:<46} {:>12}", s.describe(), format_gib(*peak));
        }
    }
    if let Some(s) = &fit.suggestion {
        let mut names: Vec<&str> = vec![];
        for sw in &s.switches {
            if *sw != super::fit::Switch::SmallerBatch {
                names.push(sw.describe());
            }
        }
        let batch = format!("batch_size = {}, grad_accum = {}", s.batch_size, s.grad_accum);
        let list = if names.is_empty() { batch.clone() } else { format!("{} with {batch}", names.join(" + ")) };
        if s.fits {
            let _ = writeln!(o, "to fit:        {list} -> peak {}", format_gib(s.peak));
        } else {
            let _ = writeln!(
                o,
                "no fit:        even {list} leaves a peak of {} (needs {}): use a larger device or a smaller model",
                format_gib(s.peak),
                format_gib(required_bytes(s.peak, fit.headroom_percent))
            );
        }
    }
}
