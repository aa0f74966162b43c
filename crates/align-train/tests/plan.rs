//! The memory plan (`align_train::plan`): the parameter count equals the tensors a config
//! implies (`lm_backend::tensor_specs`) for every architecture; each term equals a value
//! computed by hand on a tiny config; LoRA counts only adapters in the optimizer; the switches
//! that make a run fit do make it fit; the tables of docs/training.md are current.

use align_losses::{Layer, Need};
use align_train::batch::StepPlan;
use align_train::plan::{
    check_fit, estimate, lora_params, param_counts, parse_memory_size, tree_pass, Block, PlanInputs, PlanOptions,
    PlanSource, Projection, RecordShape, Switch, GIB,
};
use align_train::RunConfig;
use lm_backend::{tensor_specs, ModelConfig};
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lm-backend/tests/fixtures");
const PLAN_CONFIGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/plan-configs");

fn specs_total(c: &ModelConfig) -> u64 {
    tensor_specs(c).iter().map(|s| s.shape.iter().product::<i64>() as u64).sum()
}

fn largest_spec(c: &ModelConfig) -> u64 {
    tensor_specs(c).iter().map(|s| s.shape.iter().product::<i64>() as u64).max().unwrap()
}

#[test]
fn parameter_count_equals_the_tensors_of_every_fixture_and_published_config() {
    let mut dirs: Vec<PathBuf> =
        ["llama", "qwen2", "gemma2", "qwen3", "mistral", "gemma3", "llama-tied", "llama-sharded"]
            .iter()
            .map(|d| Path::new(FIXTURES).join(d))
            .collect();
    dirs.extend(
        ["qwen2.5-7b-instruct", "llama-3.1-8b-instruct", "gemma-2-9b-it"]
            .iter()
            .map(|d| Path::new(PLAN_CONFIGS).join(d)),
    );
    for dir in dirs {
        let c = ModelConfig::from_dir(&dir).unwrap();
        let p = param_counts(&c);
        assert_eq!(p.total, specs_total(&c), "{}", dir.display());
        assert_eq!(p.largest_tensor, largest_spec(&c), "{}", dir.display());
        assert_eq!(p.output == 0, c.tie_word_embeddings, "{}", dir.display());
    }
    // The published sizes of the three 7-9B checkpoints.
    let total = |d: &str| param_counts(&ModelConfig::from_dir(Path::new(PLAN_CONFIGS).join(d)).unwrap()).total;
    assert_eq!(total("qwen2.5-7b-instruct"), 7_615_616_512);
    assert_eq!(total("llama-3.1-8b-instruct"), 8_030_261_248);
    assert_eq!(total("gemma-2-9b-it"), 9_241_705_984);
}

#[test]
fn parameter_count_covers_biases_and_tying_in_every_architecture() {
    for (model_type, extra) in [
        ("llama", r#", "attention_bias": true, "mlp_bias": true"#),
        ("llama", r#", "tie_word_embeddings": true, "head_dim": 6"#),
        ("qwen2", r#", "tie_word_embeddings": false"#),
        ("qwen2", r#", "tie_word_embeddings": true"#),
        ("gemma2", r#", "sliding_window": 4, "tie_word_embeddings": false"#),
        ("gemma2", r#", "sliding_window": 4"#),
    ] {
        let text = format!(
            r#"{{"model_type": "{model_type}", "vocab_size": 50, "hidden_size": 16, "intermediate_size": 20,
                "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2 {extra}}}"#
        );
        let c = ModelConfig::from_json_str(&text, "config.json").unwrap();
        assert_eq!(param_counts(&c).total, specs_total(&c), "{model_type} {extra}");
    }
}

/// A tiny Llama: V 10, D 4, I 6, 2 layers, 2 heads of 2 (Q 4), 1 KV head (K 2), untied.
fn tiny() -> ModelConfig {
    ModelConfig::from_json_str(
        r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 4, "intermediate_size": 6,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1}"#,
        "config.json",
    )
    .unwrap()
}

fn run(extra_model: &str, extra: &str) -> RunConfig {
    let text = format!(
        "[model]\npath = \"m\"\n{extra_model}\n[data]\ntrain = \"d.jsonl\"\nmax_length = 5\n\
         [[objective]]\nkind = \"dpo\"\n[train]\nbatch_size = 1\n{extra}"
    );
    RunConfig::parse(&text, Path::new("run.toml")).unwrap()
}

fn dpo() -> StepPlan {
    StepPlan::new(&[Need::PolicyLogps, Need::ReferenceLogps], false)
}

/// Prompt 2, completions 3: a tree of 8 tokens, 5 predicting positions (1 + 2 + 2).
const SHAPE: RecordShape = RecordShape { prompt: 2, completion: 3, variant_prompt: 2 };

#[test]
fn every_term_of_a_tiny_f32_dpo_run_equals_its_hand_count() {
    let (m, r, step) = (tiny(), run("", ""), dpo());
    let mut inputs = PlanInputs::new(&r, &m, &step, SHAPE);
    inputs.records = Some(7);
    let plan = estimate(&inputs);
    // Parameters: embed 40 + lm_head 40 + 2 x (q 16 + k 8 + v 8 + o 16 + gate 24 + up 24
    // + down 24 + norms 8 = 128) + final norm 4.
    assert_eq!(plan.model.params.total, 340);
    assert_eq!(plan.model.params.per_layer, 128);
    let t = &plan.terms;
    assert_eq!((t.weights, t.gradients, t.optimizer_state, t.master_weights), (1360, 1360, 2720, 0));
    assert_eq!(t.reference_model_setup, 1360, "DPO loads the reference for its cache");
    assert_eq!(t.reference_model, 0, "and drops it before training");
    assert_eq!(t.reference_cache, 140, "5 f32 columns x 7 records");
    // One pass: the policy tree, 8 tokens in one chunk, 5 predicting rows.
    let [policy] = &plan.passes[..] else { panic!("{:?}", plan.passes) };
    assert_eq!((policy.pass.tokens, policy.pass.predicting, policy.pass.chunks), (8, 5, 1));
    assert_eq!(policy.pass.blocks, vec![Block { count: 1, len: 8 }]);
    // Per token and layer (f32, sdpa, one chunk): norms 2 x (4D + 4D) = 64; q, k, v 3 x 4Q
    // = 48; sdpa output 4Q + lse 4H = 24; q/k/v input 4D = 16; o_proj input 0 (a view of
    // the sdpa output); MLP 3 x 4I = 72; gate/up input 16; down input 4I = 24: 264.
    // Per chunk: the f32 mask 4 x 8^2 = 256. One layer: 8 x 264 + 256 = 2368.
    assert_eq!(policy.bytes.layer, 2368);
    // Two layers, plus one bool mask 8^2 = 64 and cos/sin 2 x 8 x hd 2 x 4 = 128.
    assert_eq!(policy.bytes.shared, 192);
    assert_eq!(t.activations, 2 * 2368 + 192);
    // Final norm 8 x (4D + 4D) = 256, projection input 4D x 5 = 80, f32 logits 4 x 5 x 10.
    assert_eq!(t.logits, 256 + 80 + 200);
    // Backward: max(layer 2368 + fresh gradient of the largest layer weight 4 x 24,
    // logits 16 x 5 x 10 = 800).
    assert_eq!(policy.bytes.logits_backward, 800);
    assert_eq!(t.backward_transient, 2368 + 96);
    // Optimizer: one f32 temporary of the largest tensor (40): the squared gradient, then
    // the denominator (the moments and weights are updated in place).
    assert_eq!(t.optimizer_transient, 4 * 40);
    // Setup: the cache pass (same tree, no gradient): a layer + its masks and tables + the
    // logits buffers 8 x P V = 400.
    assert_eq!(t.setup_forward, 2368 + 192 + 400);
    let persistent = 1360 + 1360 + 2720 + 140; // the cache lives here on a CPU
    assert_eq!(plan.phases.step, persistent + 4928 + 536 + 2464);
    assert_eq!(plan.phases.optimizer, persistent + 160);
    assert_eq!(plan.phases.setup, 1360 + 1360 + 2960);
    assert_eq!(plan.phases.peak, plan.phases.step);
    assert_eq!(plan.phases.peak_phase, "step");
}

#[test]
fn eager_bf16_checkpointing_and_padding_change_the_terms_as_counted() {
    let (m, step) = (tiny(), dpo());
    let layer = |r: &RunConfig| estimate(&PlanInputs::new(r, &m, &step, SHAPE)).passes[0].bytes.layer;
    // Eager: no sdpa output and lse (-24), the o_proj input is its own tensor (+16): 256 per
    // token; per chunk the f32 softmax H x 4 x 8^2 = 512 and the inverted mask 64.
    assert_eq!(layer(&run("attention = \"eager\"", "")), 8 * 256 + 512 + 64);
    // bf16: norms 2 x (4D + 2D) = 48, q/k/v 24, sdpa 2Q + 4H = 16, q/k/v input 8, MLP 36,
    // gate/up input 8, down input 12: 152; the mask in bf16 2 x 64.
    let bf16 = run("dtype = \"bf16\"", "");
    assert_eq!(layer(&bf16), 8 * 152 + 128);
    let plan = estimate(&PlanInputs::new(&bf16, &m, &step, SHAPE));
    let t = &plan.terms;
    assert_eq!((t.weights, t.gradients, t.master_weights, t.optimizer_state), (680, 680, 1360, 2720));
    assert_eq!(t.optimizer_transient, 2 * 4 * 40, "bf16: the gradient's f32 copy too");
    // Eager bf16: the bf16 copy of the softmax too, H x (4 + 2) x 64 + 64.
    assert_eq!(layer(&run("dtype = \"bf16\"\nattention = \"eager\"", "")), 8 * (152 - 16 + 8) + 2 * 6 * 64 + 64);
    // Checkpointing keeps each layer's input: 2 layers x 8 tokens x 4D.
    let ckpt = estimate(&PlanInputs::new(&run("", "gradient_checkpointing = true"), &m, &step, SHAPE));
    assert_eq!(ckpt.terms.activations, 2 * 8 * 16 + 192);
    assert_eq!(ckpt.terms.backward_transient, 2 * 2368 + 96, "recomputed layer + its working set");
    // Padded: two rows of 5 tokens (10 tokens, one chunk of the whole batch), 6 scored rows;
    // attention per row: 2 x 4 x 5^2.
    let padded = estimate(&PlanInputs::new(&run("", "packing = false"), &m, &step, SHAPE));
    let p = &padded.passes[0];
    assert_eq!((p.pass.tokens, p.pass.predicting), (10, 6));
    assert_eq!(p.pass.blocks, vec![Block { count: 2, len: 5 }]);
    assert_eq!(p.bytes.layer, 10 * 264 + 2 * 4 * 25);
}

#[test]
fn lora_trains_only_its_adapters_and_needs_no_reference_copy() {
    let (m, step) = (tiny(), dpo());
    let r = run("dtype = \"bf16\"", "[lora]\nr = 2\ntarget_modules = [\"q_proj\", \"v_proj\"]");
    let plan = estimate(&PlanInputs::new(&r, &m, &step, SHAPE));
    // q: 2 x (D 4 + Q 4) = 16, v: 2 x (D 4 + K 2) = 12; 2 layers.
    let adapters = 2 * (16 + 12);
    assert_eq!(lora_params(&m, 2, &[Projection::QProj, Projection::VProj]), adapters);
    let t = &plan.terms;
    assert_eq!(t.optimizer_state, 8 * adapters, "m and v of the adapters only");
    assert_eq!(t.gradients, 4 * adapters);
    assert_eq!(t.master_weights, 0, "f32 adapters need no master copy");
    assert_eq!(t.weights, 2 * 340 + 4 * adapters);
    assert_eq!((t.reference_model_setup, t.reference_model), (0, 0), "the reference is the base, adapters off");
    assert_eq!(plan.run.lora.as_ref().unwrap().adapter_bytes, 16 * adapters);
    // Per token: frozen norms 2 x 4D = 32, q/k/v 24, sdpa 16, the q/k/v input cast to f32 for
    // the q and v adapters 2 x (4D + 4r) = 48, MLP 36, frozen gate/up/down inputs 0: 156.
    assert_eq!(plan.passes[0].bytes.layer, 8 * 156 + 128);
    // Every projection with the default r = 16.
    let all = run("", "[lora]");
    let all_plan = estimate(&PlanInputs::new(&all, &m, &step, SHAPE));
    let per_layer: u64 = Projection::ALL
        .iter()
        .map(|p| {
            let (i, o) = p.widths(&m);
            16 * (i + o)
        })
        .sum();
    assert_eq!(all_plan.terms.optimizer_state, 8 * 2 * per_layer);
    // A reference in another folder is a second copy even with LoRA.
    let with_ref = run("reference = \"other\"", "[lora]");
    let mut inputs = PlanInputs::new(&with_ref, &m, &step, SHAPE);
    inputs.reference_model = Some(&m);
    assert_eq!(estimate(&inputs).terms.reference_model_setup, 4 * 340);
}

#[test]
fn mlc_mpo_and_kto_add_their_passes() {
    let m = tiny();
    let text = "[model]\npath = \"m\"\n[data]\ntrain = \"d.jsonl\"\nlanguages = [\"en\", \"de\", \"fr\"]\n\
                max_length = 5\n[[objective]]\nkind = \"dpo\"\n[train]\nbatch_size = 2\n";
    let r = RunConfig::parse(text, Path::new("run.toml")).unwrap();
    let needs = [
        Need::PolicyLogps,
        Need::ReferenceLogps,
        Need::KlLogps,
        Need::PromptVariantStates { layer: Layer::Index(1) },
        Need::TargetPairLogps,
        Need::DominantStates { layer: Layer::Last },
    ];
    let step = StepPlan::new(&needs, false);
    let plan = estimate(&PlanInputs::new(&r, &m, &step, SHAPE));
    let names: Vec<(&str, u64, u64, u64, bool)> = plan
        .passes
        .iter()
        .map(|p| (p.pass.name.as_str(), p.pass.tokens, p.pass.layers, p.pass.predicting, p.pass.grad))
        .collect();
    assert_eq!(
        names,
        vec![
            ("policy (chosen + rejected)", 16, 2, 10, true),
            ("KL pairs (KTO)", 10, 2, 6, true),
            ("prompt variants (MLC)", 8, 1, 0, true), // 2 records x 2 variants x 2 tokens, layer 1
            ("target pairs (MPO)", 32, 2, 20, true),  // 2 records x 2 languages x 8 tokens
            ("reference states (MPO retain)", 10, 2, 0, false),
        ]
    );
    let t = &plan.terms;
    assert_eq!(t.reference_model, 1360, "MPO's retain states keep the reference");
    let kept: u64 = plan.passes.iter().map(|p| p.bytes.activations).sum();
    assert_eq!(t.activations, kept);
    // Retain: the reference pass's layer and tables, plus (2 x 4 + 4) x B (p + c) x D.
    let retain = &plan.passes[4].bytes;
    assert_eq!(t.retain_states, retain.layer + retain.shared + 12 * 10 * 4);
}

#[test]
fn packing_follows_the_packers_chunk_rule() {
    // Trees of 300 tokens: three per 1024-token chunk; 7 trees -> 2 full chunks and 1 of 300.
    let p = tree_pass("t", 7, 100, &[100, 100], 4, true, true);
    assert_eq!(p.blocks, vec![Block { count: 2, len: 900 }, Block { count: 1, len: 300 }]);
    assert_eq!((p.tokens, p.chunks, p.predicting), (2100, 3, 7 * 199));
    // A tree longer than a chunk gets one of its own.
    let p = tree_pass("t", 3, 1, &[1500, 1500], 4, true, true);
    assert_eq!(p.blocks, vec![Block { count: 3, len: 3001 }]);
    // Prompts alone score nothing.
    assert_eq!(tree_pass("t", 5, 10, &[], 1, false, true).predicting, 0);
    assert_eq!(RecordShape::worst_case(1024), RecordShape { prompt: 1, completion: 1023, variant_prompt: 1024 });
    assert_eq!(
        RecordShape::with_prompt(1024, 100),
        Some(RecordShape { prompt: 100, completion: 924, variant_prompt: 100 })
    );
    assert_eq!(RecordShape::with_prompt(1024, 1024), None);
    assert_eq!(RecordShape::with_prompt(1024, 0), None);
}

#[test]
fn the_suggested_switches_make_the_run_fit() {
    let m = ModelConfig::from_dir(Path::new(PLAN_CONFIGS).join("llama-3.1-8b-instruct")).unwrap();
    let step = dpo();
    let r = RunConfig::parse(
        "[model]\npath = \"m\"\ndevice = \"cuda\"\n[data]\ntrain = \"d.jsonl\"\n[[objective]]\nkind = \"dpo\"\n\
         [train]\nbatch_size = 4\n",
        Path::new("run.toml"),
    )
    .unwrap();
    let inputs = PlanInputs::new(&r, &m, &step, RecordShape::worst_case(1024));
    let plan = estimate(&inputs);
    // f32 full fine-tuning of 8 B parameters: 16 bytes each before any activation.
    assert!(plan.phases.peak > 16 * 8_030_261_248);
    let fit = check_fit(&inputs, &plan, parse_memory_size("80GiB").unwrap());
    assert!(!fit.fits);
    let s = fit.suggestion.as_ref().expect("a suggestion");
    assert!(s.fits, "{s:?}");
    assert!(align_train::plan::required_bytes(s.peak, 10) <= 80 * GIB);
    // Only LoRA brings 8 B parameters of AdamW state under 80 GiB.
    assert!(s.switches.contains(&Switch::Lora), "{s:?}");
    // Each switch of the suggestion is needed: dropping any one no longer fits.
    for skip in 0..s.switches.len() {
        let mut run = r.clone();
        for (i, sw) in s.switches.iter().enumerate() {
            if i != skip {
                sw.apply(&mut run, false);
            }
        }
        let peak = estimate(&PlanInputs::new(&run, &m, &step, RecordShape::worst_case(1024))).phases.peak;
        assert!(align_train::plan::required_bytes(peak, 10) > 80 * GIB, "{:?} without #{skip}", s.switches);
    }
    // A run that fits gets no suggestion; the single switches all lower the peak.
    let big = check_fit(&inputs, &plan, parse_memory_size("1TiB").unwrap());
    assert!(big.fits && big.suggestion.is_none());
    assert!(big.single_switches.iter().all(|(_, peak)| *peak < plan.phases.peak), "{:?}", big.single_switches);
}

#[test]
fn a_plan_source_reads_only_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(Path::new(FIXTURES).join("gemma2/config.json"), model.join("config.json")).unwrap();
    let text = "[model]\npath = \"model\"\n[data]\ntrain = \"absent.jsonl\"\nlanguages = [\"en\", \"de\"]\n\
                [[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 2\nhead_dim = 8\n";
    let path = dir.path().join("run.toml");
    std::fs::write(&path, text).unwrap();
    let config = RunConfig::from_file(&path).unwrap();
    let source = PlanSource::read(&config, &path, &PlanOptions::default()).unwrap();
    let plan = source.plan();
    assert_eq!(plan.run.records, None, "the data file is absent");
    assert_eq!(plan.run.attention_used, "eager", "Gemma 2's soft-capped scores");
    assert_eq!(plan.terms.objective_heads, 16 * 8 * (32 + 1), "the MLC head: 8 x (D + 1) f32 with grad, m, v");
    assert_eq!(plan.passes[1].pass.layers, 2, "the variant pass stops at the MLC layer");
    // Records are counted as non-blank lines when the files exist (5 f32 cache columns each).
    std::fs::write(dir.path().join("absent.jsonl"), "{}\n\n{}\n  \n{}").unwrap();
    let counted = PlanSource::read(&config, &path, &PlanOptions::default()).unwrap().plan();
    assert_eq!((counted.run.records, counted.terms.reference_cache), (Some(3), 60));
    // A prompt length outside 1..max_length is an error naming it.
    let e = PlanSource::read(&config, &path, &PlanOptions { prompt_tokens: Some(1024), world_size: 1 })
        .unwrap_err()
        .to_string();
    assert!(e.contains("prompt tokens") && e.contains("max_length = 1024"), "{e}");
    // A model folder without config.json is an error naming the folder.
    std::fs::remove_file(model.join("config.json")).unwrap();
    let e = PlanSource::read(&config, &path, &PlanOptions::default()).unwrap_err();
    assert!(format!("{e}").contains("model"), "{e}");
}

/// `layer = "auto"` needs the weights, which a plan does not load: it is planned at the deepest
/// candidate, `L - 1`, the same plan as that index; a model with fewer than 2 layers has no
/// candidate, an error naming the key.
#[test]
fn an_auto_layer_is_planned_at_the_deepest_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(Path::new(FIXTURES).join("llama/config.json"), model.join("config.json")).unwrap();
    let path = dir.path().join("run.toml");
    let plan_with = |kind: &str, layer: &str| {
        let text = format!(
            "[model]\npath = \"model\"\n[data]\ntrain = \"absent.jsonl\"\nlanguages = [\"en\", \"de\"]\n\
             [[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"{kind}\"\nlayer = {layer}\n"
        );
        std::fs::write(&path, text).unwrap();
        let config = RunConfig::from_file(&path).unwrap();
        PlanSource::read(&config, &path, &PlanOptions::default()).map(|s| s.plan())
    };
    for kind in ["mlc", "cosine"] {
        let auto = plan_with(kind, "\"auto\"").unwrap();
        assert_eq!(auto.passes[1].pass.layers, 2, "{kind}: the fixture has 3 layers, the deepest candidate is 2");
        assert_eq!(auto, plan_with(kind, "2").unwrap(), "{kind}");
        assert_ne!(auto, plan_with(kind, "1").unwrap(), "{kind}: the depth matters to the plan");
    }
    let config = std::fs::read_to_string(model.join("config.json")).unwrap();
    let one_layer = config.replace("\"num_hidden_layers\": 3", "\"num_hidden_layers\": 1");
    assert_ne!(one_layer, config);
    std::fs::write(model.join("config.json"), one_layer).unwrap();
    let e = plan_with("mlc", "\"auto\"").unwrap_err().to_string();
    assert!(e.contains("[[objective]] #2 (kind = \"mlc\") `layer`") && e.contains("1 decoder layer(s)"), "{e}");
}

#[path = "../examples/plan_tables.rs"]
mod plan_tables;

#[test]
fn docs_tables_are_current() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/training.md")).unwrap();
    let (begin, end) = ("<!-- plan-tables:begin -->\n", "<!-- plan-tables:end -->");
    let start = docs.find(begin).expect("docs/training.md marks its plan tables") + begin.len();
    let stop = start + docs[start..].find(end).expect("and their end");
    let expected = plan_tables::tables(Path::new(PLAN_CONFIGS));
    assert!(
        docs[start..stop] == expected,
        "docs/training.md's plan tables are stale: regenerate them with \
         `cargo run -p align-train --example plan_tables` and paste them between the markers"
    );
}

#[test]
fn gemma2_sandwich_norms_softcaps_and_windows_are_counted() {
    // V 10, D 4, I 6, 2 layers (sliding, full), 2 heads of 2, 1 KV head, tied, soft-capped.
    let m = ModelConfig::from_json_str(
        r#"{"model_type": "gemma2", "vocab_size": 10, "hidden_size": 4, "intermediate_size": 6,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 2,
            "sliding_window": 4, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}"#,
        "config.json",
    )
    .unwrap();
    let step = dpo();
    let plan = estimate(&PlanInputs::new(&run("", ""), &m, &step, SHAPE));
    assert_eq!(plan.run.attention_used, "eager", "soft-capped scores cannot use the fused kernel");
    let p = &plan.passes[0].bytes;
    // Per token: four norms x (4D + the f32 `1 + w` product 4D) = 128; q, k, v 48; q/k/v
    // input 16; o_proj input 16 (eager); MLP 72; gate/up input 16; down input 24: 320.
    // Per chunk: f32 softmax and the soft-cap's tanh, 2 heads x (4 + 4) x 64, mask 64.
    assert_eq!(p.layer, 8 * 320 + 2 * 8 * 64 + 64);
    // Masks for the two windows (sliding 4, full) and cos/sin.
    assert_eq!(p.shared, 2 * 64 + 2 * 8 * 2 * 4);
    // Final norm 8 x 8D, projection input 4D x 5, f32 logits and the final soft-cap's tanh.
    assert_eq!(p.logits, 8 * 32 + 80 + 200 + 200);
    // bf16: the norms still keep f32 (`1 + w` is applied in f32); the softmax's bf16 copy.
    let bf16 = estimate(&PlanInputs::new(&run("dtype = \"bf16\"", ""), &m, &step, SHAPE));
    assert_eq!(bf16.passes[0].bytes.layer, 8 * (128 + 24 + 8 + 8 + 36 + 8 + 12) + 2 * (4 + 2 + 2) * 64 + 64);
}

#[test]
fn the_headroom_is_the_devices() {
    let (m, step) = (tiny(), dpo());
    for (device, percent) in [("cpu", 20), ("cuda", 10), ("cuda:1", 10)] {
        let r = run(&format!("device = {device:?}"), "");
        let inputs = PlanInputs::new(&r, &m, &step, SHAPE);
        let plan = estimate(&inputs);
        let fit = check_fit(&inputs, &plan, GIB);
        let peak = plan.phases.peak;
        assert_eq!(fit.headroom_percent, percent, "{device}");
        assert_eq!(fit.required_bytes, peak + peak * percent / 100 + GIB, "{device}");
        assert!(!fit.fits, "1 GiB is all headroom");
        let fit = check_fit(&inputs, &plan, fit.required_bytes);
        assert!(fit.fits, "exactly the required bytes fit");
    }
}

#[test]
fn a_data_parallel_plan_is_per_process_and_sharding_divides_the_optimizer_state() {
    let step = dpo();
    let m = tiny();
    let (whole, sharded) = (run("dtype = \"bf16\"", ""), run("dtype = \"bf16\"", "shard_optimizer = true"));
    let plan = |r: &RunConfig, world: u64| {
        let mut inputs = PlanInputs::new(r, &m, &step, SHAPE);
        inputs.world_size = world;
        estimate(&inputs)
    };
    let one = plan(&whole, 1);
    // 340 bf16 parameters: moments 8 x 340, f32 master weights 4 x 340.
    assert_eq!((one.terms.optimizer_state, one.terms.master_weights, one.terms.gradients), (2720, 1360, 680));
    // Without sharding, every process holds all of it; a gradient bucket is in flight.
    let four = plan(&whole, 4);
    assert_eq!((four.terms.optimizer_state, four.terms.master_weights), (2720, 1360));
    assert_eq!(four.terms.backward_transient, 2 * align_train::dist::BUCKET_BYTES as u64);
    // Sharded over 4: a quarter of the state and master weights, plus a quarter of the summed
    // gradients in f32 (4 x 340 / 4).
    let s = plan(&sharded, 4);
    assert_eq!((s.terms.optimizer_state, s.terms.master_weights, s.terms.gradients), (680, 340, 680 + 340));
    assert_eq!((s.run.world_size, s.run.shard_optimizer), (4, true));
    // One process: the switch changes nothing, and the fit check does not offer it.
    assert_eq!(plan(&sharded, 1).terms.optimizer_state, 2720);
    let mut inputs = PlanInputs::new(&whole, &m, &step, SHAPE);
    let fit = check_fit(&inputs, &estimate(&inputs), 1000);
    assert!(fit.single_switches.iter().all(|(s, _)| *s != Switch::ShardOptimizer));
    inputs.world_size = 4;
    let fit = check_fit(&inputs, &estimate(&inputs), 1000);
    assert!(fit.single_switches.iter().any(|(s, _)| *s == Switch::ShardOptimizer));
}
