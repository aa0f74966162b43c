//! `align demo [--output DIR] [--steps N] [--methods LIST] [--prompts N]`: the embedded
//! default. Aligns the bundled tiny base model of the testbed world with DPO, DPO+MLC, MPO,
//! MPO+MLC and SFT+MLC, evaluates each (and the base) on held-out concepts in six languages,
//! and prints the report (one table per metric, the `align report` renderer); `DIR/report.md`
//! with its charts and `DIR/results.json` keep them (see docs/demo.md).

use std::path::{Path, PathBuf};

use align_testbed::{run_demo, DemoOptions, Method, World, WorldConfig};

use crate::progress::train_reporter;
use anyhow::{bail, Context};
use clap::Args;

/// Arguments of `align demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the runs, report.md, its charts and results.json go.
    #[arg(long, value_name = "DIR", default_value = "runs/demo")]
    pub output: PathBuf,
    /// The testbed assets (data files, tokenizer, base/); default: the repository's
    /// assets/testbed.
    #[arg(long, value_name = "DIR")]
    pub assets: Option<PathBuf>,
    /// Optimizer steps per method.
    #[arg(long, value_name = "N", default_value_t = 48)]
    pub steps: usize,
    /// Comma-separated methods (base, dpo, dpo+mlc, mpo, mpo+mlc, sft+mlc), in table order.
    #[arg(long, value_name = "LIST", default_value = "base,dpo,dpo+mlc,mpo,mpo+mlc,sft+mlc")]
    pub methods: String,
    /// Held-out prompts per language and attribute to evaluate (at most 32, the default).
    #[arg(long, value_name = "N")]
    pub prompts: Option<usize>,
}

/// The bundled assets: `./assets/testbed` when run from a checkout's root, else the folder
/// next to this crate in the source tree it was built from.
fn default_assets() -> PathBuf {
    let here = Path::new("assets/testbed");
    if here.join("world.json").is_file() {
        return here.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/testbed")
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

/// Runs the demo and prints the tables.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let assets = args.assets.clone().unwrap_or_else(default_assets);
    let mut options = DemoOptions::new(&assets, &args.output);
    options.steps = args.steps;
    options.methods = parse_methods(&args.methods)?;
    options.prompts_per_language = args.prompts;
    options.on_event = Some(train_reporter());
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let world = World::generate(&WorldConfig::default()).context("generating the testbed world")?;
    let started = std::time::Instant::now();
    run_demo(&world, &options, &mut |line| eprintln!("{line}"))
        .with_context(|| format!("the demo on {} failed", assets.display()))?;
    let report_path = args.output.join("report.md");
    let text =
        std::fs::read_to_string(&report_path).with_context(|| format!("cannot read {}", report_path.display()))?;
    println!();
    print!("{text}");
    println!();
    println!(
        "demo finished in {:.0} s; report.md, its charts and results.json in {}",
        started.elapsed().as_secs_f64(),
        args.output.display()
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
}
