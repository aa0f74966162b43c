//! `align demo [--world NAME] [--seeds LIST] [--output DIR] [--steps N] [--methods LIST] ...`:
//! the embedded default. On each seed of a testbed world it first checks the premises of the
//! bundled base model (a harmfulness probe per layer and language, and its compliance with
//! held-out benign requests), then aligns the model with DPO, DPO+MLC, MPO, MPO+MLC and
//! SFT+MLC, evaluates each (and the base) on held-out concepts in six languages, runs DPO+MLC
//! at every other layer (the sweep that `layer = "auto"` is compared with) and the ablation
//! world without cross-lingual text, and prints the report: every number as the mean ± sd over the
//! seeds. `DIR/report.md` and `DIR/study.json` keep it, with per-seed reports and charts
//! (see docs/demo.md).

use std::path::{Path, PathBuf};

use align_testbed::study::{run_study, StudyOptions};
use align_testbed::{Method, WorldKind};

use crate::progress::train_reporter;
use anyhow::{bail, Context};
use clap::Args;

/// Arguments of `align demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the runs, report.md and study.json go.
    #[arg(long, value_name = "DIR", default_value = "runs/demo")]
    pub output: PathBuf,
    /// The bundled assets' root (holding testbed/, testbed-anchored/, ...); default: the
    /// repository's assets/.
    #[arg(long, value_name = "DIR")]
    pub assets: Option<PathBuf>,
    /// The world: `anchored` (the second world, whose premises are checked first) or
    /// `uniform` (the first world, equal language shares, one seed).
    #[arg(long, value_name = "NAME", default_value = "anchored")]
    pub world: String,
    /// Comma-separated seeds (each needs bundled assets); default: the world's bundled seeds
    /// (anchored: 1,2,3; uniform: 42).
    #[arg(long, value_name = "LIST")]
    pub seeds: Option<String>,
    /// Optimizer steps per method.
    #[arg(long, value_name = "N", default_value_t = 48)]
    pub steps: usize,
    /// Comma-separated methods (base, dpo, dpo+mlc, mpo, mpo+mlc, sft+mlc), in table order.
    #[arg(long, value_name = "LIST", default_value = "base,dpo,dpo+mlc,mpo,mpo+mlc,sft+mlc")]
    pub methods: String,
    /// MLC's layer: `auto` (the anchored world's default: chosen from the base model's
    /// consistency profile) or a hidden-state index (the uniform world's default: 2).
    #[arg(long, value_name = "auto|N")]
    pub mlc_layer: Option<String>,
    /// Skip DPO+MLC at the other candidate layers (the sweep `auto` is compared with).
    #[arg(long)]
    pub no_sweep: bool,
    /// Skip the ablation world without cross-lingual (parallel or code-switched) text.
    #[arg(long)]
    pub no_ablation: bool,
    /// Held-out prompts per language and attribute to evaluate (default: all).
    #[arg(long, value_name = "N")]
    pub prompts: Option<usize>,
}

/// The bundled assets' root: `./assets` when run from a checkout's root, else the folder next
/// to this crate in the source tree it was built from.
fn default_assets() -> PathBuf {
    let here = Path::new("assets");
    if here.join("testbed/world.json").is_file() {
        return here.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets")
}

/// Parses `--methods`.
fn parse_methods(list: &str) -> anyhow::Result<Vec<Method>> {
    let methods = list
        .split(',')
        .map(|m| m.trim())
        .filter(|m| !m.is_empty())
        .map(|m| {
            Method::from_name(m).with_context(|| {
                let known: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                format!("--methods: unknown method `{m}` (known: {})", known.join(", "))
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if methods.is_empty() {
        bail!("--methods: no method given");
    }
    Ok(methods)
}

/// The study `args` ask for.
fn study_options(args: &DemoArgs) -> anyhow::Result<StudyOptions> {
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let world = match WorldKind::from_name(&args.world) {
        Some(w @ (WorldKind::Anchored | WorldKind::Uniform)) => w,
        _ => bail!("--world: unknown world `{}` (known: anchored, uniform)", args.world),
    };
    let assets = args.assets.clone().unwrap_or_else(default_assets);
    let mut options = StudyOptions::new(&assets, &args.output);
    options.world = world;
    options.seeds = match &args.seeds {
        None => world.seeds().to_vec(),
        Some(list) => list
            .split(',')
            .map(|s| s.trim().parse::<u64>().with_context(|| format!("--seeds: `{s}` is not a seed number")))
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    if options.seeds.is_empty() {
        bail!("--seeds: no seed given");
    }
    options.demo.steps = args.steps;
    options.demo.methods = parse_methods(&args.methods)?;
    options.demo.prompts_per_language = args.prompts;
    options.demo.on_event = Some(train_reporter());
    match args.mlc_layer.as_deref() {
        Some("auto") => options.demo.mlc.auto = true,
        Some(n) => {
            options.demo.mlc.auto = false;
            options.demo.mlc.layer =
                n.parse().with_context(|| format!("--mlc-layer: `{n}` is neither `auto` nor a layer index"))?;
        }
        None => options.demo.mlc.auto = world == WorldKind::Anchored,
    }
    for &seed in &options.seeds {
        let dir = world.assets(&assets, seed);
        if !dir.join("base/config.json").is_file() {
            bail!(
                "no bundled base model for the {} world, seed {seed}, in {} (the bundled seeds are {:?}; build one \
                 with `cargo run --release -p align-testbed --example build_base -- --world {} --seed {seed}`)",
                world.name(),
                dir.display(),
                world.seeds(),
                world.name()
            );
        }
    }
    options.sweep = !args.no_sweep && options.demo.mlc.auto;
    if args.no_ablation || world == WorldKind::Uniform {
        options.ablation.clear();
    }
    Ok(options)
}

/// Runs the demo and prints the report.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let options = study_options(&args)?;
    let started = std::time::Instant::now();
    let report = run_study(&options, &|line| eprintln!("{line}"))
        .with_context(|| format!("the demo on the {} world failed", options.world.name()))?;
    let report_path = args.output.join("report.md");
    let text =
        std::fs::read_to_string(&report_path).with_context(|| format!("cannot read {}", report_path.display()))?;
    println!();
    print!("{text}");
    println!();
    println!(
        "demo finished in {:.0} s; report.md and study.json in {}{}",
        started.elapsed().as_secs_f64(),
        args.output.display(),
        if report.premises_hold() { "" } else { " (a premise check FAILED: see the report)" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_in_order_and_unknown_ones_are_named() {
        assert_eq!(parse_methods("base, dpo+mlc").unwrap(), vec![Method::Base, Method::DpoMlc]);
        let err = parse_methods("dpo,ppo").unwrap_err().to_string();
        assert!(err.contains("`ppo`") && err.contains("mpo+mlc"), "{err}");
        assert!(parse_methods(" , ").is_err());
    }

    fn args(extra: &[&str]) -> DemoArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            demo: DemoArgs,
        }
        let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets");
        let mut argv = vec!["demo".to_string(), "--assets".into(), assets.display().to_string()];
        argv.extend(extra.iter().map(|s| s.to_string()));
        Cli::parse_from(argv).demo
    }

    #[test]
    fn the_default_is_the_anchored_world_with_auto_layer_sweep_and_ablation() {
        let o = study_options(&args(&[])).unwrap();
        assert_eq!((o.world, o.seeds.clone()), (WorldKind::Anchored, vec![1, 2, 3]));
        assert!(o.demo.mlc.auto && o.sweep && !o.ablation.is_empty());
        let o = study_options(&args(&["--world", "uniform"])).unwrap();
        assert_eq!((o.world, o.seeds.clone()), (WorldKind::Uniform, vec![42]));
        assert!(!o.demo.mlc.auto && o.demo.mlc.layer == 2 && !o.sweep && o.ablation.is_empty());
        let o = study_options(&args(&["--mlc-layer", "3", "--no-ablation", "--seeds", "2"])).unwrap();
        assert!(!o.demo.mlc.auto && o.demo.mlc.layer == 3 && !o.sweep && o.ablation.is_empty());
        assert_eq!(o.seeds, vec![2]);
    }

    #[test]
    fn bad_demo_arguments_are_named() {
        let err = |a: &[&str]| study_options(&args(a)).unwrap_err().to_string();
        assert!(err(&["--world", "flat"]).contains("--world"));
        assert!(err(&["--seeds", "1,x"]).contains("`x`"));
        assert!(err(&["--seeds", "99"]).contains("seed 99"));
        assert!(err(&["--mlc-layer", "deep"]).contains("--mlc-layer"));
        assert!(err(&["--steps", "0"]).contains("--steps"));
    }
}
