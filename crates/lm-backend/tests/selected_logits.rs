//! `final_hidden` + `project_logits` (logits at selected positions only) against the
//! transformers logits of the fixtures, at the real positions of the padded batch: the
//! positions are gathered first and projected afterwards, as a trainer scoring completion
//! tokens would do. Each comparison with transformers runs with each attention
//! implementation (`sdpa` and `eager`).

mod required_only;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lm_backend::{AttentionImpl, CausalLm, HfCausalLm, HiddenRequest, LmError, LoadOptions};
use required_only::RequiredOnly;
use tch::{Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn check(name: &str) {
    for attention in AttentionImpl::ALL {
        check_with(name, attention);
    }
}

fn check_with(name: &str, attention: AttentionImpl) {
    let model = HfCausalLm::load(fixture(name), LoadOptions::cpu_f32().with_attention(attention)).unwrap();
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
    assert!(diff < 1e-4, "{name} ({attention}): selected logits differ from transformers by {diff}");
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

/// `forward_at` at the real positions of the padded fixture batch: the `[N, V]` rows equal
/// transformers' logits there, and the requested hidden states equal `forward`'s.
fn check_forward_at(name: &str) {
    for attention in AttentionImpl::ALL {
        check_forward_at_with(name, attention);
    }
}

fn check_forward_at_with(name: &str, attention: AttentionImpl) {
    let model = HfCausalLm::load(fixture(name), LoadOptions::cpu_f32().with_attention(attention)).unwrap();
    let e: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(fixture(name).join("expected.safetensors")).unwrap().into_iter().collect();
    let (ids, mask) = (&e["input_ids"], &e["attention_mask"]);
    let (b, t) = (ids.size()[0], ids.size()[1]);
    let vocab = model.config().vocab_size as i64;
    let request = HiddenRequest::layers([1]);
    let out = model.forward_at(ids, mask, mask, &request).unwrap();
    let real = mask.ne(0).view([-1]).nonzero().squeeze_dim(1);
    let reference = e["logits"].view([b * t, vocab]).index_select(0, &real);
    assert_eq!(out.logits.size(), reference.size());
    let diff = (out.logits.to_kind(Kind::Double) - reference.to_kind(Kind::Double)).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "{name} ({attention}): forward_at logits differ from transformers by {diff}");
    let full = model.forward(ids, mask, &request).unwrap();
    assert_eq!(out.hidden.layers.keys().collect::<Vec<_>>(), vec![&1], "{name}: only the requested layer");
    assert!(out.hidden.layers[&1].equal(&full.hidden.layers[&1]), "{name}: hidden states differ");
}

#[test]
fn forward_at_matches_transformers_llama() {
    check_forward_at("llama");
}

#[test]
fn forward_at_matches_transformers_qwen2_tied() {
    check_forward_at("qwen2");
}

#[test]
fn forward_at_matches_transformers_gemma2_softcap() {
    check_forward_at("gemma2");
}

/// Gradients through the selected projection equal those through the full logits (the
/// default implementation), for a loss on a sparse, irregular set of positions; the last
/// layer's states (index L, the final norm's output) come back only when requested.
#[test]
fn forward_at_gradients_equal_the_full_path() {
    for attention in AttentionImpl::ALL {
        forward_at_gradients_with(attention);
    }
}

fn forward_at_gradients_with(attention: AttentionImpl) {
    let model = HfCausalLm::load(fixture("llama"), LoadOptions::cpu_f32().with_attention(attention)).unwrap();
    let e: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(fixture("llama").join("expected.safetensors")).unwrap().into_iter().collect();
    let (ids, mask) = (&e["input_ids"], &e["attention_mask"]);
    // Every third real position.
    let (b, t) = (ids.size()[0], ids.size()[1]);
    let every_third = Tensor::arange(b * t, (Kind::Int64, tch::Device::Cpu)).view([b, t]).remainder(3).eq(0);
    let positions = every_third.logical_and(&mask.ne(0));
    model.set_trainable(true);
    let grads = |m: &dyn CausalLm| {
        for p in model.parameters().values() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let out = m.forward_at(ids, mask, &positions, &HiddenRequest::none()).unwrap();
        assert!(out.hidden.layers.is_empty());
        let loss = out.logits.log_softmax(-1, Kind::Float).select(1, 3).sum(Kind::Float);
        loss.backward();
        model.parameters().values().map(|p| p.grad().copy()).collect::<Vec<_>>()
    };
    let selected = grads(&model);
    let full = grads(&RequiredOnly(&model));
    model.set_trainable(false);
    assert_eq!(selected.len(), full.len());
    for (a, b) in selected.iter().zip(&full) {
        let scale = b.abs().max().double_value(&[]).max(1e-6);
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(diff <= 1e-4 * scale, "{attention}: gradient differs by {diff} (scale {scale})");
    }
}

#[test]
fn forward_at_checks_its_positions() {
    let model = HfCausalLm::load(fixture("llama"), LoadOptions::cpu_f32()).unwrap();
    let ids = Tensor::from_slice(&[1i64, 2, 3, 4]).view([2, 2]);
    let mask = ids.ones_like();
    let wrong = Tensor::ones([2, 3], (Kind::Bool, tch::Device::Cpu));
    let err = model.forward_at(&ids, &mask, &wrong, &HiddenRequest::none()).unwrap_err();
    assert!(matches!(err, LmError::Input { .. }) && err.to_string().contains("positions"), "{err}");
    let err = RequiredOnly(&model).forward_at(&ids, &mask, &wrong, &HiddenRequest::none()).unwrap_err();
    assert!(err.to_string().contains("positions"), "{err}");
    // No position selected: an empty [0, V] result, not an error.
    let none = Tensor::zeros([2, 2], (Kind::Bool, tch::Device::Cpu));
    let out = model.forward_at(&ids, &mask, &none, &HiddenRequest::none()).unwrap();
    assert_eq!(out.logits.size(), [0, model.config().vocab_size as i64]);
}
