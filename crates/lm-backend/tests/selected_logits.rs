//! `final_hidden` + `project_logits` (logits at selected positions only) against the
//! transformers logits of the fixtures, at the real positions of the padded batch: the
//! positions are gathered first and projected afterwards, as a trainer scoring completion
//! tokens would do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lm_backend::{CausalLm, HfCausalLm, LmError, LoadOptions};
use tch::{Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn check(name: &str) {
    let model = HfCausalLm::load(fixture(name), LoadOptions::cpu_f32()).unwrap();
    let e: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(fixture(name).join("expected.safetensors")).unwrap().into_iter().collect();
    let (ids, mask) = (&e["input_ids"], &e["attention_mask"]);
    let hidden = model.final_hidden(ids, mask).unwrap(); // [B, T, D]
    let (b, t) = (ids.size()[0], ids.size()[1]);
    assert_eq!(hidden.size(), [b, t, model.config().hidden_size as i64]);
    // Real positions only, flattened: [N, D] -> [N, V].
    let real = mask.ne(0).view([-1]).nonzero().squeeze_dim(1);
    let selected = hidden.view([b * t, -1]).index_select(0, &real);
    let logits = model.project_logits(&selected).unwrap();
    let vocab = model.config().vocab_size as i64;
    let reference = e["logits"].view([b * t, vocab]).index_select(0, &real);
    assert_eq!(logits.size(), reference.size());
    let diff = (logits.to_kind(Kind::Double) - reference.to_kind(Kind::Double)).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "{name}: selected logits differ from transformers by {diff}");
}

#[test]
fn selected_positions_match_transformers_llama() {
    check("llama");
}

#[test]
fn selected_positions_match_transformers_qwen2_tied() {
    check("qwen2");
}

#[test]
fn selected_positions_match_transformers_gemma2_softcap() {
    check("gemma2");
}

#[test]
fn projection_checks_its_input() {
    let model = HfCausalLm::load(fixture("llama"), LoadOptions::cpu_f32()).unwrap();
    let d = model.config().hidden_size as i64;
    let wrong_width = Tensor::zeros([3, d + 1], (Kind::Float, tch::Device::Cpu));
    let err = model.project_logits(&wrong_width).unwrap_err();
    assert!(matches!(err, LmError::Input { .. }), "{err}");
    assert!(err.to_string().contains("hidden"), "{err}");
    let wrong_kind = Tensor::zeros([3, d], (Kind::Double, tch::Device::Cpu));
    assert!(model.project_logits(&wrong_kind).is_err());
}
