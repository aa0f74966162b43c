//! Converts a llama-architecture GGUF file into a Hugging Face folder.
//!
//! ```text
//! cargo run --release -p lm-backend --example gguf_convert -- MODEL.gguf OUT_DIR [f32|f16|bf16]
//! ```

use lm_backend::gguf::{convert_to_hf, ConvertOptions, ExportDtype};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dtype = match args.get(2).map(String::as_str) {
        None | Some("f32") => ExportDtype::F32,
        Some("f16") => ExportDtype::F16,
        Some("bf16") => ExportDtype::BF16,
        Some(other) => exit(&format!("unknown dtype {other:?}: use f32, f16 or bf16")),
    };
    let (Some(input), Some(output)) = (args.first(), args.get(1)) else {
        exit("usage: gguf_convert MODEL.gguf OUT_DIR [f32|f16|bf16]");
    };
    let options = ConvertOptions { dtype, overwrite: true };
    match convert_to_hf(input, output, &options) {
        Ok(report) => {
            println!(
                "wrote {} ({} tensors, {} parameters, tied embeddings: {}, source types {:?})",
                output, report.tensors, report.parameters, report.tied_embeddings, report.source_types
            );
            for warning in &report.warnings {
                println!("warning: {warning}");
            }
        }
        Err(e) => exit(&format!("error: {e}")),
    }
}

fn exit(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2);
}
