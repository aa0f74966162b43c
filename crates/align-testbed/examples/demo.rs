//! The demo without the CLI: `cargo run --release -p align-testbed --example demo -- [OUT] [--steps N] [--prompts N] [--methods a,b]`.

use align_testbed::{run_demo, DemoOptions, Method, World, WorldConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut options = DemoOptions::new("assets/testbed", "runs/demo");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--steps" => options.steps = args.next().ok_or("--steps N")?.parse()?,
            "--prompts" => options.prompts_per_language = Some(args.next().ok_or("--prompts N")?.parse()?),
            "--lr" => options.lr = args.next().ok_or("--lr X")?.parse()?,
            "--layer" => options.mlc.layer = args.next().ok_or("--layer L")?.parse()?,
            "--mlc-weight" => options.mlc.weight = args.next().ok_or("--mlc-weight X")?.parse()?,
            "--methods" => {
                options.methods = args
                    .next()
                    .ok_or("--methods a,b")?
                    .split(',')
                    .map(|m| Method::from_name(m).ok_or(format!("unknown method {m}")))
                    .collect::<Result<_, _>>()?
            }
            _ => options.output = a.into(),
        }
    }
    let world = World::generate(&WorldConfig::default())?;
    run_demo(&world, &options, &mut |line| eprintln!("{line}"))?;
    print!("{}", std::fs::read_to_string(options.output.join("report.md"))?);
    Ok(())
}
