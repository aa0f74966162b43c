//! Run-config parsing: defaults, and an error naming the key and table for every bad input.

use align_train::config::{Dtype, LayerChoice, MpoVariant, OnNonFinite, RetainForm};
use align_train::{ObjectiveKind, RunConfig, ScheduleKind, TrainError};
use std::path::Path;

const MINIMAL: &str = "[model]\npath = \"m\"\n[data]\ntrain = \"d.jsonl\"\n[[objective]]\nkind = \"dpo\"\n";

fn parse(text: &str) -> Result<RunConfig, TrainError> {
    RunConfig::parse(text, Path::new("/runs/exp/run.toml"))
}

fn err(text: &str) -> String {
    parse(text).expect_err("config should be rejected").to_string()
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.model.path, Path::new("/runs/exp/m"), "relative to the config file");
    assert_eq!((c.model.dtype, c.model.device.as_str(), c.model.reference.clone()), (Dtype::F32, "cpu", None));
    assert_eq!(c.data.train, vec![Path::new("/runs/exp/d.jsonl").to_path_buf()]);
    assert_eq!(
        (c.data.languages.clone(), c.data.max_length, c.data.skip_bad_lines),
        (vec!["en".to_string()], 1024, false)
    );
    assert_eq!(c.objectives[0].kind, ObjectiveKind::Dpo { beta: 0.1, label_smoothing: 0.0 });
    assert_eq!((c.objectives[0].weight, c.objectives[0].name.as_str()), (1.0, "dpo"));
    assert_eq!((c.optim.lr, c.optim.weight_decay, c.optim.betas, c.optim.eps), (5e-7, 0.0, [0.9, 0.999], 1e-8));
    assert_eq!((c.optim.max_grad_norm, c.optim.schedule, c.optim.warmup_ratio), (1.0, ScheduleKind::Cosine, 0.1));
    let t = &c.train;
    assert_eq!((t.batch_size, t.grad_accum, t.epochs, t.max_steps, t.seed, t.save_every), (8, 1, 1, 0, 42, 0));
    assert_eq!(t.on_nonfinite, OnNonFinite::Stop);
}

#[test]
fn every_kind_parses_with_its_defaults() {
    let cases = [
        ("robust_dpo", ObjectiveKind::RobustDpo { beta: 0.1, label_smoothing: 0.1 }),
        ("hinge", ObjectiveKind::Hinge { beta: 0.1 }),
        ("ipo", ObjectiveKind::Ipo { beta: 0.1 }),
        ("r_dpo", ObjectiveKind::RDpo { beta: 0.1, alpha: 0.01 }),
        ("simpo", ObjectiveKind::Simpo { beta: 2.0, gamma: 1.0 }),
        ("cpo", ObjectiveKind::Cpo { beta: 0.1, alpha: 1.0 }),
        ("orpo", ObjectiveKind::Orpo { beta: 0.1 }),
        ("kto", ObjectiveKind::Kto { beta: 0.1, desirable_weight: 1.0, undesirable_weight: 1.0 }),
        ("sft", ObjectiveKind::Sft),
        (
            "mpo",
            ObjectiveKind::Mpo {
                beta: 1.0,
                retain: RetainForm::LastToken,
                retain_layer: None,
                retain_weight: 1.0,
                variant: MpoVariant::Paper,
                target_gap: None,
            },
        ),
    ];
    for (kind, expected) in cases {
        let text = MINIMAL.replace("kind = \"dpo\"", &format!("kind = \"{kind}\""));
        let c = parse(&text).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(c.objectives[0].kind, expected, "{kind}");
        assert_eq!(c.objectives[0].kind.kind_name(), kind);
    }
}

#[test]
fn stacked_terms_with_parameters() {
    let text = format!(
        "{MINIMAL}beta = 0.25\nlabel_smoothing = 0.1\n[[objective]]\nkind = \"mlc\"\nweight = 0.5\nlayer = 3\ntau = 0.5\nhead_dim = 16\n\
         [[objective]]\nkind = \"sft\"\nweight = 1\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.objectives.len(), 3);
    assert_eq!(c.objectives[0].kind, ObjectiveKind::Dpo { beta: 0.25, label_smoothing: 0.1 });
    assert_eq!(c.objectives[1].kind, ObjectiveKind::Mlc { layer: LayerChoice::Index(3), tau: 0.5, head_dim: 16 });
    assert_eq!(c.objectives[1].weight, 0.5);
    assert_eq!(c.objectives[2].weight, 1.0, "integer weights are accepted");
}

#[test]
fn unknown_keys_name_key_and_table() {
    let e = err(&format!("{MINIMAL}[optim]\nlrr = 1e-5\n"));
    assert!(e.contains("unknown key `lrr` in [optim]") && e.contains("lr, weight_decay"), "{e}");
    let e = err(&format!("{MINIMAL}gamma = 1.0\n"));
    assert!(e.contains("unknown key `gamma` in [[objective]] #1 (kind = \"dpo\")"), "{e}");
    let e = err(&MINIMAL.replace("[data]", "[data]\nlanguage = [\"en\"]"));
    assert!(e.contains("unknown key `language` in [data]"), "{e}");
    let e = err(&format!("{MINIMAL}[trian]\nseed = 1\n"));
    assert!(e.contains("unknown key `trian` in the top level"), "{e}");
    assert!(err(&MINIMAL.replace("[model]", "[model]\ndtyp = \"bf16\"")).contains("`dtyp` in [model]"));
}

#[test]
fn missing_required_parts_are_named() {
    assert!(err("[data]\ntrain = \"d\"\n[[objective]]\nkind = \"dpo\"\n").contains("missing key `[model]`"));
    assert!(err(&MINIMAL.replace("path = \"m\"", "device = \"cpu\"")).contains("missing key `path` in [model]"));
    assert!(err(&MINIMAL.replace("train = \"d.jsonl\"", "")).contains("missing key `train` in [data]"));
    let no_objective = MINIMAL.replace("[[objective]]\nkind = \"dpo\"\n", "");
    assert!(err(&no_objective).contains("[[objective]]"), "{}", err(&no_objective));
    assert!(err(&MINIMAL.replace("kind = \"dpo\"", "weight = 1.0")).contains("missing key `kind` in [[objective]] #1"));
    assert!(err(&MINIMAL.replace("kind = \"dpo\"", "kind = \"mlc\"")).contains("missing key `layer`"));
}

#[test]
fn invalid_values_are_explained() {
    let e = err(&MINIMAL.replace("kind = \"dpo\"", "kind = \"dop\""));
    assert!(e.contains("\"dop\" is not one of dpo, robust_dpo"), "{e}");
    let e = err(&format!("{MINIMAL}[[objective]]\nkind = \"dpo\"\n"));
    assert!(e.contains("`dpo` is also the name of term #1"), "{e}");
    assert!(err(&format!("{MINIMAL}[optim]\nlr = 0\n")).contains("`lr`: must be a finite number > 0"));
    assert!(err(&format!("{MINIMAL}[optim]\nwarmup_ratio = 1.5\n")).contains("warmup_ratio"));
    assert!(err(&format!("{MINIMAL}[train]\nbatch_size = 0\n")).contains("batch_size"));
    assert!(err(&MINIMAL.replace("path = \"m\"", "path = \"m\"\ndevice = \"gpu\"")).contains("\"cuda:N\""));
    let e = err(&format!("{MINIMAL}[optim]\nschedule = \"step\"\n"));
    assert!(e.contains("[optim]") && e.contains("step"), "{e}");
    let e = err(&format!("{MINIMAL}[train]\nseed = \"x\"\n"));
    assert!(e.contains("[train]") && e.contains("run.toml"), "{e}");
    assert!(err("[model\npath=1").contains("run.toml"), "syntax errors name the file");
}

#[test]
fn mpo_constant_target_needs_its_gap() {
    let mpo = MINIMAL.replace("kind = \"dpo\"", "kind = \"mpo\"");
    let c = parse(&format!("{mpo}variant = \"constant_target\"\ntarget_gap = 1.58\n")).unwrap();
    assert!(matches!(c.objectives[0].kind, ObjectiveKind::Mpo { target_gap: Some(g), .. } if g == 1.58));
    assert!(err(&format!("{mpo}variant = \"constant_target\"\n")).contains("missing key `target_gap`"));
    assert!(err(&format!("{mpo}target_gap = 2.0\n")).contains("only used with variant = \"constant_target\""));
    assert!(err(&format!("{mpo}variant = \"fancy\"\n")).contains("fancy"));
}

#[test]
fn two_named_terms_of_one_kind_and_a_file_list() {
    let text = MINIMAL.replace("train = \"d.jsonl\"", "train = [\"a.jsonl\", \"/abs/b.jsonl\"]")
        + "name = \"dpo_a\"\n[[objective]]\nkind = \"dpo\"\nname = \"dpo_b\"\nbeta = 0.5\n";
    let c = parse(&text).unwrap();
    assert_eq!(c.objectives[1].name, "dpo_b");
    assert_eq!(c.data.train[1], Path::new("/abs/b.jsonl"), "absolute paths stay");
}

#[test]
fn reads_from_a_file_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    assert_eq!(RunConfig::from_file(&path).unwrap().model.path, dir.path().join("m"));
    let e = RunConfig::from_file(&dir.path().join("nope.toml")).unwrap_err().to_string();
    assert!(e.contains("nope.toml"), "{e}");
}

#[test]
fn every_example_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/configs");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let c = RunConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!c.objectives.is_empty());
            seen.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    seen.sort();
    assert_eq!(seen, ["dpo_mlc", "dpo_mlc_lora", "mpo", "mpo_mlc", "orpo_mlc", "sft_mlc", "simpo_mlc"]);
}

#[test]
fn batches_are_packed_by_default_and_grouping_is_opt_in() {
    let c = parse(MINIMAL).unwrap();
    assert!(c.train.packing && !c.train.group_by_length);
    let c = parse(&format!("{MINIMAL}[train]\npacking = false\ngroup_by_length = true\n")).unwrap();
    assert!(!c.train.packing && c.train.group_by_length);
    let e = err(&format!("{MINIMAL}[train]\npacking = 1\n"));
    assert!(e.contains("[train]") && e.contains("bool"), "{e}");
}

/// The allowed keys of each table, as the unknown-key error lists them (serde's field lists).
#[test]
fn unknown_key_errors_list_every_allowed_key_of_the_table() {
    let cases = [
        (MINIMAL.replace("[model]", "[model]\nx = 1"), "[model]", "path, dtype, device, reference, attention"),
        (MINIMAL.replace("[data]", "[data]\nx = 1"), "[data]", "train, languages, max_length, skip_bad_lines"),
        (
            format!("{MINIMAL}[optim]\nx = 1\n"),
            "[optim]",
            "lr, weight_decay, betas, eps, max_grad_norm, schedule, warmup_ratio",
        ),
        (
            format!("{MINIMAL}[train]\nx = 1\n"),
            "[train]",
            "batch_size, grad_accum, epochs, max_steps, seed, save_every, on_nonfinite, packing, group_by_length, gradient_checkpointing, collective_timeout_s, shard_optimizer",
        ),
        (format!("{MINIMAL}[lora]\nx = 1\n"), "[lora]", "r, alpha, dropout, target_modules"),
        (format!("x = 1\n{MINIMAL}"), "the top level", "model, data, objective, optim, train, lora"),
    ];
    for (text, table, allowed) in cases {
        match parse(&text).unwrap_err() {
            TrainError::UnknownKey { table: t, key, allowed: a, path } => {
                assert_eq!((t.as_str(), key.as_str(), a.as_str()), (table, "x", allowed));
                assert_eq!(path, Path::new("/runs/exp/run.toml"));
            }
            other => panic!("{table}: {other}"),
        }
    }
}

#[test]
fn unknown_objective_parameters_list_the_kinds_parameters() {
    let kinds = [
        ("dpo", "beta, label_smoothing"),
        ("robust_dpo", "beta, label_smoothing"),
        ("hinge", "beta"),
        ("ipo", "beta"),
        ("r_dpo", "beta, alpha"),
        ("simpo", "beta, gamma"),
        ("cpo", "beta, alpha"),
        ("orpo", "beta"),
        ("kto", "beta, desirable_weight, undesirable_weight"),
        ("sft", ""),
        ("mpo", "beta, retain, retain_layer, retain_weight, variant, target_gap"),
        ("mlc", "layer, tau, head_dim"),
        ("cosine", "layer"),
    ];
    let registered: Vec<&str> = align_train::objectives::KINDS.iter().map(|k| k.name).collect();
    assert_eq!(registered, kinds.map(|(k, _)| k), "the registry lists every kind of architecture.md, in order");
    for (kind, parameters) in kinds {
        let text = MINIMAL.replace("kind = \"dpo\"", &format!("kind = \"{kind}\"\nlayer = 1\nzeta = 1"));
        let expected = format!("kind, weight, name{}{parameters}", if parameters.is_empty() { "" } else { ", " });
        match parse(&text).unwrap_err() {
            TrainError::UnknownKey { table, key, allowed, .. } => {
                let first_unknown = if parameters.split(", ").any(|p| p == "layer") { "zeta" } else { "layer" };
                assert_eq!(table, format!("[[objective]] #1 (kind = \"{kind}\")"));
                assert_eq!((key.as_str(), allowed.as_str()), (first_unknown, expected.as_str()), "{kind}");
            }
            other => panic!("{kind}: {other}"),
        }
    }
}

#[test]
fn consistency_kinds_parse_and_report_what_they_read() {
    let text = MINIMAL.replace("kind = \"dpo\"", "kind = \"cosine\"\nlayer = 4");
    let c = parse(&text).unwrap();
    assert_eq!(c.objectives[0].kind, ObjectiveKind::Cosine { layer: LayerChoice::Index(4) });
    assert_eq!(c.objectives[0].kind.kind_name(), "cosine");
    let text = MINIMAL.replace("kind = \"dpo\"", "kind = \"mlc\"\nlayer = 2");
    assert_eq!(
        parse(&text).unwrap().objectives[0].kind,
        ObjectiveKind::Mlc { layer: LayerChoice::Index(2), tau: 1.0, head_dim: 0 }
    );
    let e = err(&MINIMAL.replace("kind = \"dpo\"", "kind = \"cosine\""));
    assert!(e.contains("missing key `layer` in [[objective]] #1 (kind = \"cosine\")"), "{e}");
    let e = err(&MINIMAL.replace("kind = \"dpo\"", "kind = \"mlc\"\nlayer = \"two\""));
    assert!(e.contains("[[objective]] #1 (kind = \"mlc\")") && e.contains("two"), "{e}");
    assert!(ObjectiveKind::Sft.is_chosen_only());
    assert!(!ObjectiveKind::Mlc { layer: LayerChoice::Index(2), tau: 1.0, head_dim: 0 }.is_chosen_only());
    let e = err(&MINIMAL.replace("kind = \"dpo\"", "kind = 3"));
    assert!(
        e.contains("3 is not one of dpo, robust_dpo, hinge, ipo, r_dpo, simpo, cpo, orpo, kto, sft, mpo, mlc, cosine"),
        "{e}"
    );
}

/// `layer` of the consistency terms: an index or "auto"; any other value is an error that
/// names the key, its table and what is accepted; "auto" is resolved before a term is built.
#[test]
fn consistency_layer_is_an_index_or_auto() {
    for kind in ["mlc", "cosine"] {
        let with_layer =
            |value: &str| MINIMAL.replace("kind = \"dpo\"", &format!("kind = \"{kind}\"\nlayer = {value}"));
        let layer_of = |value: &str| parse(&with_layer(value)).unwrap().objectives[0].kind.layer_choice();
        assert_eq!(layer_of("7"), Some(LayerChoice::Index(7)), "{kind}");
        assert_eq!(layer_of("0"), Some(LayerChoice::Index(0)), "{kind}");
        assert_eq!(layer_of("\"auto\""), Some(LayerChoice::Auto), "{kind}");
        let table = format!("[[objective]] #1 (kind = \"{kind}\") `layer`");
        for bad in ["\"deepest\"", "\"Auto\"", "\"14\"", "-1", "2.5", "true", "[3]"] {
            let e = err(&with_layer(bad));
            assert!(e.contains(&table), "{kind} layer = {bad}: {e}");
            assert!(
                e.contains("expected a hidden-state index (an integer >= 0) or \"auto\""),
                "{kind} layer = {bad}: {e}"
            );
        }
        let e = err(&with_layer("\"deepest\""));
        assert!(e.contains("\"deepest\""), "the rejected value is quoted: {e}");
    }
    let auto = ObjectiveKind::Mlc { layer: LayerChoice::Auto, tau: 1.0, head_dim: 0 };
    assert_eq!(auto.with_auto_layer(2), ObjectiveKind::Mlc { layer: LayerChoice::Index(2), tau: 1.0, head_dim: 0 });
    let fixed = ObjectiveKind::Cosine { layer: LayerChoice::Index(1) };
    assert_eq!(fixed.with_auto_layer(2), fixed, "a fixed layer is kept");
    assert_eq!(ObjectiveKind::Sft.layer_choice(), None);
    assert_eq!((LayerChoice::Auto.to_string(), LayerChoice::Index(3).to_string()), ("\"auto\"".into(), "3".into()));

    use align_train::terms::{build_objective, ModelShape};
    let c = parse(&MINIMAL.replace("kind = \"dpo\"", "kind = \"mlc\"\nlayer = \"auto\"")).unwrap();
    let store = tch::nn::VarStore::new(tch::Device::Cpu);
    let shape = ModelShape { num_layers: 3, hidden_size: 8 };
    let e = build_objective(&c.objectives, shape, &store.root(), Path::new("run.toml")).err().unwrap().to_string();
    assert!(e.contains("`layer`: \"auto\" must be resolved to an index before the term is built"), "{e}");
}

/// Every registered kind builds its term from its defaults, named after the kind (or its
/// `name`), and a build function refuses another entry's kind.
#[test]
fn every_registered_kind_builds_its_term() {
    use align_train::objectives::{kind_entry, KINDS};
    use align_train::terms::{build_objective, ModelShape, TermContext};

    let mut text = MINIMAL.replace("[[objective]]\nkind = \"dpo\"\n", "");
    for k in KINDS {
        let parameters = match k.name {
            "mlc" => "layer = 2\nhead_dim = 4\n",
            "cosine" => "layer = 2\n",
            _ => "",
        };
        text.push_str(&format!("[[objective]]\nkind = \"{0}\"\nname = \"term_{0}\"\n{parameters}", k.name));
    }
    let c = parse(&text).unwrap();
    let store = tch::nn::VarStore::new(tch::Device::Cpu);
    let shape = ModelShape { num_layers: 3, hidden_size: 8 };
    let stack = build_objective(&c.objectives, shape, &(store.root() / "heads"), Path::new("run.toml")).unwrap();
    let names: Vec<&str> = stack.terms().iter().map(|t| t.term.name()).collect();
    let expected: Vec<String> = KINDS.iter().map(|k| format!("term_{}", k.name)).collect();
    assert_eq!(names, expected);
    assert!(!store.variables().is_empty(), "the MLC head is created under the heads path");

    let e = build_objective(
        &parse(&MINIMAL.replace("kind = \"dpo\"", "kind = \"mlc\"\nlayer = 4")).unwrap().objectives,
        shape,
        &store.root(),
        Path::new("run.toml"),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("[[objective]] #1 (kind = \"mlc\") `layer`: 4 is past the model's last hidden-state index 3"),
        "{e}"
    );

    let root = store.root();
    let cx = TermContext {
        name: "x",
        shape,
        heads: &root,
        table: "[[objective]] #1".into(),
        config_path: Path::new("run.toml"),
    };
    let e = (kind_entry("dpo").unwrap().build)(&ObjectiveKind::Sft, &cx).err().unwrap().to_string();
    assert!(e.contains("a `sft` term cannot be built as `dpo`"), "{e}");
}

/// A value of the wrong type or an unknown option names its key, not only its table.
#[test]
fn rejected_values_name_their_key() {
    let cases = [
        (format!("{MINIMAL}[train]\npacking = 1\n"), "[train] `packing`", "bool"),
        (format!("{MINIMAL}[train]\nseed = \"x\"\n"), "[train] `seed`", "string"),
        (format!("{MINIMAL}[optim]\nschedule = \"step\"\n"), "[optim] `schedule`", "step"),
        (MINIMAL.replace("kind = \"dpo\"", "kind = \"dpo\"\nbeta = \"x\""), "(kind = \"dpo\") `beta`", "string"),
        (MINIMAL.replace("kind = \"dpo\"", "kind = \"mpo\"\nretain = \"all\""), "(kind = \"mpo\") `retain`", "all"),
        (MINIMAL.replace("path = \"m\"", "path = \"m\"\ndtype = 16"), "[model] `dtype`", "expected"),
    ];
    for (text, names, detail) in cases {
        let e = err(&text);
        assert!(e.contains(names) && e.contains(detail) && e.contains("run.toml"), "{e}");
    }
}

#[test]
fn memory_switches_default_off_and_sdpa_on() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.model.attention, align_train::config::AttentionImpl::Sdpa);
    assert!(!c.train.gradient_checkpointing);
    assert_eq!(c.lora, None, "no [lora] table: full fine-tuning");
    let c = parse(&format!("{MINIMAL}[train]\ngradient_checkpointing = true\n")).unwrap();
    assert!(c.train.gradient_checkpointing);
    let c = parse(&MINIMAL.replace("path = \"m\"", "path = \"m\"\nattention = \"eager\"")).unwrap();
    assert_eq!(c.model.attention, align_train::config::AttentionImpl::Eager);
    let e = err(&MINIMAL.replace("path = \"m\"", "path = \"m\"\nattention = \"flash\""));
    assert!(e.contains("[model]") && e.contains("attention"), "{e}");
}

#[test]
fn lora_table_gets_peft_style_defaults_and_checks_each_key() {
    let c = parse(&format!("{MINIMAL}[lora]\n")).unwrap();
    let lora = c.lora.expect("an empty [lora] table turns LoRA on");
    assert_eq!((lora.r, lora.alpha, lora.dropout), (16, 32.0, 0.0));
    assert_eq!(lora.target_modules, align_train::config::LORA_DEFAULT_TARGETS.map(String::from).to_vec());
    let c = parse(&format!("{MINIMAL}[lora]\nr = 4\nalpha = 8\ntarget_modules = [\"q_proj\", \"v_proj\"]\n")).unwrap();
    let lora = c.lora.unwrap();
    assert_eq!((lora.r, lora.alpha, lora.target_modules.len()), (4, 8.0, 2));
    for (body, key, why) in [
        ("r = 0", "r", "at least 1"),
        ("alpha = -1.0", "alpha", "> 0"),
        ("dropout = 1.0", "dropout", "[0, 1)"),
        ("target_modules = []", "target_modules", "at least one"),
        ("target_modules = [\"qproj\"]", "target_modules", "`qproj` is not one of"),
        ("rank = 8", "rank", "allowed"),
    ] {
        let e = err(&format!("{MINIMAL}[lora]\n{body}\n"));
        assert!(e.contains("[lora]") && e.contains(key) && e.contains(why), "{body}: {e}");
    }
}
