//! The demo over several seeds of a world: per seed, the premise checks of the bundled base
//! model ([`crate::premise`]) first, then every method ([`run_demo`]), then (optionally) DPO +
//! MLC at every other candidate layer (the sweep that `layer = "auto"` is compared with), and
//! optionally the same on the world without parallel text (the ablation). The report gives
//! every number as the mean and spread (sample standard deviation) over the seeds.
//!
//! Output layout (`<output>/`): `report.md` (what `align demo` prints), `study.json`
//! ([`StudyReport`]), and per world and seed `<world>/seed-<n>/`: `premise.json`, `data/`
//! (the world's files, regenerated from the seed), the per-seed demo (`results.json`,
//! `report.md`, its charts, one folder per method) and `sweep/layer-<L>/`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::demo::{
    load_model, load_tokenizer, run_demo, write_eval_json, DemoOptions, DemoReport, Method, MethodResult,
};
use crate::error::Result;
use crate::premise::{check_premises, mean_over, PremiseReport, PremiseThresholds, ProbeKind};
use crate::{write_world, TestbedError, World, WorldKind, BASE_DIR};

/// What the study runs.
#[derive(Debug, Clone)]
pub struct StudyOptions {
    /// The world.
    pub world: WorldKind,
    /// Its seeds (each has bundled assets: [`WorldKind::assets`]).
    pub seeds: Vec<u64>,
    /// The bundled assets' root (the repository's `assets/`).
    pub assets_root: PathBuf,
    /// Where everything goes.
    pub output: PathBuf,
    /// The per-seed demo: methods, steps, learning rate, MLC settings (`assets`, `data`,
    /// `output` and `seed` are set per seed).
    pub demo: DemoOptions,
    /// Also train DPO + MLC at every other candidate layer (1 to L-1), when the MLC layer is
    /// `auto`.
    pub sweep: bool,
    /// The methods to run on the world without parallel text (empty: no ablation).
    pub ablation: Vec<Method>,
    /// The premise thresholds.
    pub thresholds: PremiseThresholds,
    /// Seeds (of the world and of the ablation) run at the same time, each on one libtorch
    /// thread; default: the machine's cores. The results do not depend on it.
    pub workers: usize,
}

impl StudyOptions {
    /// The default `align demo`: the anchored world on its three seeds, every method with MLC
    /// at `layer = "auto"`, the layer sweep, and base / DPO / DPO + MLC on the ablation world.
    pub fn new(assets_root: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        let mut demo = DemoOptions::new("", "");
        demo.mlc.auto = true;
        StudyOptions {
            world: WorldKind::Anchored,
            seeds: WorldKind::Anchored.seeds().to_vec(),
            assets_root: assets_root.into(),
            output: output.into(),
            demo,
            sweep: true,
            ablation: vec![Method::Base, Method::Dpo, Method::DpoMlc],
            thresholds: PremiseThresholds::default(),
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
    }
}

/// One seed of one world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    /// The world's seed (also the training seed).
    pub seed: u64,
    /// The premise checks of its base model.
    pub premise: PremiseReport,
    /// The methods' numbers.
    pub demo: DemoReport,
    /// DPO + MLC per layer (the auto layer's run included), by layer.
    pub sweep: BTreeMap<usize, MethodResult>,
}

/// Everything the study measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyReport {
    /// The world.
    pub world: WorldKind,
    /// Language tags, dominant first.
    pub languages: Vec<String>,
    /// One entry per seed.
    pub seeds: Vec<SeedRun>,
    /// The ablation world's seeds (empty without an ablation).
    pub ablation: Vec<SeedRun>,
    /// Seconds for the whole study.
    pub seconds: f64,
}

impl StudyReport {
    /// Whether every seed's premises hold (the ablation world's are reported, not required).
    pub fn premises_hold(&self) -> bool {
        self.seeds.iter().all(|s| s.premise.holds())
    }
}

/// Runs the study; `log` receives progress lines.
pub fn run_study(options: &StudyOptions, log: &(dyn Fn(&str) + Sync)) -> Result<StudyReport> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&options.output)
        .map_err(|source| TestbedError::Io { path: options.output.clone(), source })?;
    let mut units: Vec<(WorldKind, u64, &[Method], bool)> = options
        .seeds
        .iter()
        .map(|&seed| (options.world, seed, options.demo.methods.as_slice(), options.sweep))
        .collect();
    if !options.ablation.is_empty() {
        units.extend(
            options.seeds.iter().map(|&seed| (WorldKind::AnchoredNoParallel, seed, options.ablation.as_slice(), false)),
        );
    }
    let workers = options.workers.clamp(1, units.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: std::sync::Mutex<Vec<Option<Result<SeedRun>>>> =
        std::sync::Mutex::new(units.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(&(kind, seed, methods, sweep)) = units.get(i) else { break };
                let failed = done.lock().map(|d| d.iter().flatten().any(|r| r.is_err())).unwrap_or(true);
                if failed {
                    break;
                }
                let result = run_seed(options, kind, seed, methods, sweep, log);
                if let Ok(mut d) = done.lock() {
                    d[i] = Some(result);
                }
            });
        }
    });
    let done = done.into_inner().map_err(|_| TestbedError::Config { what: "a demo worker panicked".into() })?;
    let mut seeds = vec![];
    let mut ablation = vec![];
    for ((kind, ..), result) in units.iter().zip(done) {
        let Some(result) = result else { continue };
        let run = result?;
        if *kind == options.world {
            seeds.push(run);
        } else {
            ablation.push(run);
        }
    }
    if seeds.len() != options.seeds.len() {
        return Err(TestbedError::Config { what: "a demo worker stopped before its seeds were done".into() });
    }
    let languages = seeds.first().map(|s| s.demo.languages.clone()).unwrap_or_default();
    let report =
        StudyReport { world: options.world, languages, seeds, ablation, seconds: started.elapsed().as_secs_f64() };
    write_eval_json(&options.output.join("study.json"), &report)?;
    let md = render_study(&report, options);
    lm_backend::atomic::write_file(&options.output.join("report.md"), md.as_bytes())?;
    Ok(report)
}

/// One seed of one world: premise checks, the methods, and the sweep. Progress lines are
/// prefixed with the world and seed (seeds run in parallel).
fn run_seed(
    options: &StudyOptions,
    kind: WorldKind,
    seed: u64,
    methods: &[Method],
    sweep: bool,
    log: &(dyn Fn(&str) + Sync),
) -> Result<SeedRun> {
    let prefix = format!("[{} {seed}] ", kind.name());
    let log = &mut |line: &str| log(&format!("{prefix}{line}"));
    let world = World::generate(&kind.config(seed))?;
    let assets = kind.assets(&options.assets_root, seed);
    let dir = seed_dir(&options.output, kind, seed);
    log(&format!("=== {} world, seed {seed}", kind.name()));
    let data = if kind == WorldKind::Uniform {
        None
    } else {
        let data = dir.join("data");
        write_world(&world, &data)?;
        Some(data)
    };
    let base = assets.join(BASE_DIR);
    let model = load_model(&base)?;
    let tokenizer = load_tokenizer(&base)?;
    if let Some(n) = options.demo.threads {
        tch::set_num_threads(n);
    }
    std::fs::create_dir_all(&dir).map_err(|source| TestbedError::Io { path: dir.clone(), source })?;
    let premise = check_premises(&world, &model, &tokenizer, options.thresholds, Some(&dir))?;
    log(&format!(
        "== premise checks: probe layer {} transfer {:.3}, l0 benign compliance {:.3}: {}",
        premise.best_layer,
        premise.best_transfer,
        premise.benign_compliance.get(&world.languages()[0].tag).copied().unwrap_or(f64::NAN),
        if premise.holds() { "hold" } else { "FAILED" }
    ));
    let mut demo = options.demo.clone();
    demo.methods = methods.to_vec();
    demo.assets = assets.clone();
    demo.data = data.clone();
    demo.output = dir.clone();
    demo.seed = seed;
    let report = run_demo(&world, &demo, log)?;
    let mut layers = BTreeMap::new();
    if let Some(r) = report.results.iter().find(|r| r.method == Method::DpoMlc) {
        layers.insert(report.mlc.layer, r.clone());
    }
    if sweep {
        if let Some(auto) = &report.auto_layer {
            for &layer in auto.candidates.iter().filter(|&&l| l != auto.chosen) {
                let mut one = demo.clone();
                one.methods = vec![Method::DpoMlc];
                one.mlc.auto = false;
                one.mlc.layer = layer;
                one.output = dir.join("sweep").join(format!("layer-{layer}"));
                log(&format!("== sweep: dpo+mlc at layer {layer}"));
                let r = run_demo(&world, &one, log)?;
                layers.insert(layer, r.results[0].clone());
            }
        }
    }
    Ok(SeedRun { seed, premise, demo: report, sweep: layers })
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() < 2 { 0.0 } else { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) };
    (mean, var.sqrt())
}

/// `mean ± sd` over the seeds (the value alone for one seed).
fn cell(values: &[f64]) -> String {
    let (m, sd) = mean_sd(values);
    if values.len() == 1 {
        format!("{m:.3}")
    } else {
        format!("{m:.3} ± {sd:.3}")
    }
}

/// The methods present in every seed, in run order.
fn methods(runs: &[SeedRun]) -> Vec<Method> {
    let Some(first) = runs.first() else { return vec![] };
    first.demo.results.iter().map(|r| r.method).filter(|m| runs.iter().all(|s| find(s, *m).is_some())).collect()
}

fn find(run: &SeedRun, method: Method) -> Option<&MethodResult> {
    run.demo.results.iter().find(|r| r.method == method)
}

/// One table: a row per method, a column per language and the average over languages, each
/// cell the mean ± sd over seeds of `pick`.
fn language_table(
    out: &mut String,
    runs: &[SeedRun],
    languages: &[String],
    pick: fn(&MethodResult) -> &BTreeMap<String, f64>,
) {
    language_columns(out, runs, languages, pick, true);
}

/// A table of one per-language metric, a row per method; `averages` adds the mean over all
/// languages and over the non-dominant ones.
fn language_columns(
    out: &mut String,
    runs: &[SeedRun],
    languages: &[String],
    pick: fn(&MethodResult) -> &BTreeMap<String, f64>,
    averages: bool,
) {
    let _ = write!(out, "| run |");
    for l in languages {
        let _ = write!(out, " {l} |");
    }
    let extra = if averages { 2 } else { 0 };
    let _ = writeln!(out, "{}", if averages { " avg | avg of l1.. |" } else { "" });
    let _ = writeln!(out, "|:--|{}", "--:|".repeat(languages.len() + extra));
    for method in methods(runs) {
        let _ = write!(out, "| {} |", method.name());
        let per_seed: Vec<&BTreeMap<String, f64>> = runs.iter().filter_map(|s| find(s, method)).map(pick).collect();
        for l in languages {
            let v: Vec<f64> = per_seed.iter().filter_map(|m| m.get(l).copied()).collect();
            let _ = write!(out, " {} |", cell(&v));
        }
        if averages {
            let avg = |skip: usize| -> Vec<f64> { per_seed.iter().map(|m| mean_over(m, languages, skip)).collect() };
            let _ = write!(out, " {} | {} |", cell(&avg(0)), cell(&avg(1)));
        }
        let _ = writeln!(out);
    }
}

fn method_sections(out: &mut String, runs: &[SeedRun], languages: &[String]) {
    let n = runs.len();
    let _ = writeln!(
        out,
        "Attack success rate on held-out harmful requests (lower is safer; mean ± sd over {n} seed(s)):\n"
    );
    language_table(out, runs, languages, |r| &r.attack_success_rate);
    let _ = writeln!(out, "\nCompliance on held-out benign requests (utility, higher is better):\n");
    language_table(out, runs, languages, |r| &r.benign_compliance);
    let _ = writeln!(
        out,
        "\nRefusal in any language of held-out harmful requests (a refusal in another language than the prompt's \
         counts as an attack success above, not here):\n"
    );
    language_table(out, runs, languages, |r| &r.harmful_refusal_any_language);
    let _ = writeln!(
        out,
        "\nRefusal in another language's words, by that language: the share of held-out harmful requests in the \
         other languages answered with this language's refusal:\n"
    );
    language_columns(out, runs, languages, |r| &r.harmful_refusal_in_words_of, false);
    let _ = writeln!(out, "\nRefusal in any language of held-out benign requests (over-refusal, lower is better):\n");
    language_table(out, runs, languages, |r| &r.benign_refusal_any_language);
    let _ = writeln!(out, "\nReward gap on held-out harmful pairs (refusal minus answer, avg log-prob):\n");
    language_table(out, runs, languages, |r| &r.reward_gap);
    let _ = writeln!(
        out,
        "\nCollinearity of the language variants of held-out prompts at each seed's MLC layer (raw and centred):\n"
    );
    let _ = writeln!(out, "| run | ratio | centred ratio |\n|:--|--:|--:|");
    for method in methods(runs) {
        let rs: Vec<&MethodResult> = runs.iter().filter_map(|s| find(s, method)).collect();
        let raw: Vec<f64> = rs.iter().map(|r| r.collinearity).collect();
        let centred: Vec<f64> = rs.iter().map(|r| r.centred_collinearity).collect();
        let _ = writeln!(out, "| {} | {} | {} |", method.name(), cell(&raw), cell(&centred));
    }
}

fn premise_section(out: &mut String, runs: &[SeedRun], languages: &[String]) {
    let _ =
        writeln!(out, "| seed | best probe layer | probe accuracy, mean of l1.. | l0 benign compliance | premises |");
    let _ = writeln!(out, "|--:|--:|--:|--:|:--|");
    for s in runs {
        let p = &s.premise;
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {} |",
            s.seed,
            p.best_layer,
            p.best_transfer,
            p.benign_compliance.get(&languages[0]).copied().unwrap_or(f64::NAN),
            if p.holds() { "hold" } else { "**FAILED**" }
        );
    }
    let _ = writeln!(
        out,
        "\nMean-difference probe accuracy per layer and language (the premise; mean ± sd over seeds; chance 0.5), \
         and the mean over l1.. of the least-squares probe and its language-centred variant (information):\n"
    );
    let _ = write!(out, "| layer | train |");
    for l in languages {
        let _ = write!(out, " {l} |");
    }
    let _ = writeln!(out, " mean of l1.. | least squares: mean of l1.. | language-centred: mean of l1.. |");
    let _ = writeln!(out, "|--:|--:|{}", "--:|".repeat(languages.len() + 3));
    let Some(first) = runs.first() else { return };
    let others = |m: &BTreeMap<String, f64>| mean_over(m, languages, 1);
    for (i, layer) in first.premise.probe.layers.iter().enumerate() {
        // (training accuracy, test accuracy per language) of the probe `kind` at this layer, per seed
        let read = |kind: ProbeKind| runs.iter().map(move |s| kind.read(&s.premise.probe.layers[i]));
        let train: Vec<f64> = read(ProbeKind::MeanDifference).map(|(train, _)| train).collect();
        let _ = write!(out, "| {} | {} |", layer.layer, cell(&train));
        for l in languages {
            let v: Vec<f64> = read(ProbeKind::MeanDifference).filter_map(|(_, a)| a.get(l).copied()).collect();
            let _ = write!(out, " {} |", cell(&v));
        }
        let mean_of_others = |kind: ProbeKind| -> Vec<f64> { read(kind).map(|(_, a)| others(a)).collect() };
        let _ = writeln!(
            out,
            " {} | {} | {} |",
            cell(&mean_of_others(ProbeKind::MeanDifference)),
            cell(&mean_of_others(ProbeKind::LeastSquares)),
            cell(&mean_of_others(ProbeKind::Centred))
        );
    }
}

fn layer_section(out: &mut String, runs: &[SeedRun], languages: &[String]) {
    let _ = writeln!(out, "| seed | auto picks | centred collinearity of the base model per candidate layer |");
    let _ = writeln!(out, "|--:|--:|:--|");
    for s in runs {
        let Some(auto) = &s.demo.auto_layer else { continue };
        let profile: Vec<String> =
            auto.profile.iter().map(|l| format!("{}: {:.3}", l.layer, l.centred_collinearity_ratio)).collect();
        let _ = writeln!(out, "| {} | {} | {} |", s.seed, auto.chosen, profile.join(", "));
    }
    let layers: Vec<usize> = runs.first().map(|s| s.sweep.keys().copied().collect()).unwrap_or_default();
    if layers.len() < 2 {
        return;
    }
    let _ = writeln!(
        out,
        "\nDPO + MLC at each layer (mean ± sd over seeds; \"avg of l1..\" is the mean over the non-dominant languages):\n"
    );
    let _ =
        writeln!(out, "| layer | chosen by auto | ASR l0 | ASR avg of l1.. | compliance l0 | compliance avg of l1.. |");
    let _ = writeln!(out, "|--:|--:|--:|--:|--:|--:|");
    for layer in layers {
        let rs: Vec<&MethodResult> = runs.iter().filter_map(|s| s.sweep.get(&layer)).collect();
        let chosen = runs.iter().filter(|s| s.demo.auto_layer.as_ref().map(|a| a.chosen) == Some(layer)).count();
        let l0 = |m: &BTreeMap<String, f64>| m.get(&languages[0]).copied().unwrap_or(f64::NAN);
        let others = |m: &BTreeMap<String, f64>| mean_over(m, languages, 1);
        let col = |f: &dyn Fn(&MethodResult) -> f64| cell(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
        let _ = writeln!(
            out,
            "| {layer} | {chosen} of {} | {} | {} | {} | {} |",
            runs.len(),
            col(&|r| l0(&r.attack_success_rate)),
            col(&|r| others(&r.attack_success_rate)),
            col(&|r| l0(&r.benign_compliance)),
            col(&|r| others(&r.benign_compliance)),
        );
    }
}

/// The study's Markdown report.
pub fn render_study(report: &StudyReport, options: &StudyOptions) -> String {
    let languages = &report.languages;
    let d = &options.demo;
    let mut out = String::new();
    let seeds: Vec<String> = report.seeds.iter().map(|s| s.seed.to_string()).collect();
    let _ = writeln!(
        out,
        "# polyalign demo: the {} world, seeds {}\n\nEvery method starts from the seed's bundled base model and \
         trains {} optimizer steps of {} pairs (AdamW, peak lr {}, cosine); MLC (lambda {}, tau {}) acts at {}. \
         Every model is evaluated on held-out concepts only. `{}` is the dominant language. Each cell is the mean ± \
         sample standard deviation over the seeds (world and training seed). What the numbers show is in \
         docs/demo.md.\n",
        report.world.name(),
        seeds.join(", "),
        d.steps,
        d.batch_size,
        d.lr,
        d.mlc.weight,
        d.mlc.tau,
        if d.mlc.auto { "the layer `layer = \"auto\"` picks".to_string() } else { format!("layer {}", d.mlc.layer) },
        languages.first().map(String::as_str).unwrap_or(""),
    );
    let _ = writeln!(out, "## Premise checks (base model, before any method)\n");
    premise_section(&mut out, &report.seeds, languages);
    let failed: Vec<String> = report.seeds.iter().filter(|s| !s.premise.holds()).map(|s| s.seed.to_string()).collect();
    if failed.is_empty() {
        let _ = writeln!(out, "\n**The premises hold on every seed.**\n");
    } else {
        let _ = writeln!(
            out,
            "\n**PREMISE FAILED on seed(s) {}.** The method results below are not evidence about the methods: the \
             base model is not in the situation the papers start from.\n",
            failed.join(", ")
        );
    }
    let _ = writeln!(out, "## Methods\n");
    method_sections(&mut out, &report.seeds, languages);
    if report.seeds.iter().any(|s| s.demo.auto_layer.is_some()) {
        let _ = writeln!(out, "\n## MLC layer: `auto` and the sweep\n");
        layer_section(&mut out, &report.seeds, languages);
    }
    if !report.ablation.is_empty() {
        let _ = writeln!(out, "\n## Ablation: the same world without parallel text\n");
        premise_section(&mut out, &report.ablation, languages);
        let _ = writeln!(out);
        method_sections(&mut out, &report.ablation, languages);
    }
    let _ = writeln!(out, "\nPer-seed reports with charts: `{}/<world>/seed-<n>/report.md`.", options.output.display());
    out
}

/// The folder of one seed's runs.
pub fn seed_dir(output: &Path, world: WorldKind, seed: u64) -> PathBuf {
    output.join(world.name()).join(format!("seed-{seed}"))
}
