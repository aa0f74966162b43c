//! Right-padded id batches, the layout [`lm_backend::CausalLm`] expects.

use tch::{Device, Kind, Tensor};

/// Rows of token ids padded on the right to one length.
pub(crate) struct RightPadded {
    /// `[B, T]` int64.
    pub input_ids: Tensor,
    /// `[B, T]` int64, 1 at tokens, 0 at padding.
    pub attention_mask: Tensor,
}

impl RightPadded {
    /// Pads `rows` (each non-empty) with `pad_id` to the longest row, on `device`.
    pub fn new(rows: &[&[i64]], pad_id: i64, device: Device) -> Self {
        let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut ids = vec![pad_id; rows.len() * width];
        let mut mask = vec![0i64; rows.len() * width];
        for (r, row) in rows.iter().enumerate() {
            ids[r * width..r * width + row.len()].copy_from_slice(row);
            mask[r * width..r * width + row.len()].iter_mut().for_each(|m| *m = 1);
        }
        let shape = [rows.len() as i64, width as i64];
        RightPadded {
            input_ids: Tensor::from_slice(&ids).view(shape).to_device(device),
            attention_mask: Tensor::from_slice(&mask).view(shape).to_device(device),
        }
    }

    /// `[B, T]` bool on `device`: true at positions `start[b]..end[b]` of each row.
    pub fn span_mask(spans: &[(usize, usize)], width: usize, device: Device) -> Tensor {
        let mut mask = vec![false; spans.len() * width];
        for (r, &(start, end)) in spans.iter().enumerate() {
            mask[r * width + start..r * width + end].iter_mut().for_each(|m| *m = true);
        }
        Tensor::from_slice(&mask).view([spans.len() as i64, width as i64]).to_kind(Kind::Bool).to_device(device)
    }
}

/// The padding id of a model: its `pad_token_id`, else its first EOS, else 0 (padding is
/// never attended to, so any id in the vocabulary will do).
pub(crate) fn pad_id(config: &lm_backend::ModelConfig) -> i64 {
    config.pad_token_id.or(config.eos_token_ids.first().copied()).unwrap_or(0)
}
