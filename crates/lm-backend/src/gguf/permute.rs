//! The rotary row permutation that llama.cpp's converter applies to Llama `q_proj`/`k_proj`.
//!
//! Hugging Face Llama applies rotary embeddings in "half-split" form (`rotate_half`: dimension
//! `i` of a head pairs with dimension `i + head_dim/2`), llama.cpp in "interleaved" form
//! (dimension `2i` pairs with `2i + 1`). To make the same weights work, llama.cpp's
//! `convert_hf_to_gguf.py` reorders the output rows of `q_proj` (with `n_head`) and `k_proj`
//! (with `n_head_kv`) inside every head. With `d = head_dim`, head `h`, `i < d/2` and `s ∈ {0, 1}`:
//!
//! ```text
//! gguf_row(h, i, s) = h·d + 2·i + s        hf_row(h, i, s) = h·d + s·d/2 + i
//! GGUF[gguf_row] = HF[hf_row]              (permute:   HF → GGUF)
//! HF[hf_row]     = GGUF[gguf_row]          (unpermute: GGUF → HF, used by the export)
//! ```
//!
//! In NumPy terms, permute is `w.reshape(n_head, 2, d/2, cols).swapaxes(1, 2).reshape(w.shape)`
//! and unpermute is `w.reshape(n_head, d/2, 2, cols).swapaxes(1, 2).reshape(w.shape)`. A bias
//! (one column) is reordered the same way.

use super::error::{GgufError, Result};

/// Checks that `rows × cols` matches the data and that the rows split into `n_heads` heads of
/// even size; returns the head size.
fn head_dim(tensor: &str, len: usize, rows: usize, cols: usize, n_heads: usize) -> Result<usize> {
    let shape_err = |message| GgufError::Shape { tensor: tensor.to_string(), message };
    if rows.checked_mul(cols) != Some(len) {
        return Err(shape_err(format!("{len} values do not form a [{rows}, {cols}] matrix")));
    }
    if n_heads == 0 || rows % (2 * n_heads) != 0 {
        return Err(shape_err(format!("{rows} rows do not split into {n_heads} heads of even size")));
    }
    Ok(rows / n_heads)
}

/// Reorders rows of a row-major `[rows, cols]` matrix: row `to(r)` of the output is row `r`
/// of the input, where `to` maps the source's interleaved index to the target's.
fn reorder_rows(data: &[f32], rows: usize, cols: usize, d: usize, hf_to_gguf: bool) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    let half = d / 2;
    for h in 0..rows / d {
        for i in 0..half {
            for s in 0..2 {
                let gguf_row = h * d + 2 * i + s;
                let hf_row = h * d + s * half + i;
                let (src, dst) = if hf_to_gguf { (hf_row, gguf_row) } else { (gguf_row, hf_row) };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// llama.cpp's permutation (Hugging Face → GGUF) of a `[rows, cols]` q/k projection with
/// `n_heads` heads (`n_head` for q, `n_head_kv` for k). `tensor` names it in errors.
pub fn permute_rotary_rows(tensor: &str, data: &[f32], rows: usize, cols: usize, n_heads: usize) -> Result<Vec<f32>> {
    let d = head_dim(tensor, data.len(), rows, cols, n_heads)?;
    Ok(reorder_rows(data, rows, cols, d, true))
}

/// The inverse of [`permute_rotary_rows`] (GGUF → Hugging Face), used when exporting.
pub fn unpermute_rotary_rows(tensor: &str, data: &[f32], rows: usize, cols: usize, n_heads: usize) -> Result<Vec<f32>> {
    let d = head_dim(tensor, data.len(), rows, cols, n_heads)?;
    Ok(reorder_rows(data, rows, cols, d, false))
}
