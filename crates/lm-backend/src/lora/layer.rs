//! One adapted projection and the switches all adapters of a model share.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tch::Tensor;

use super::seeded::{combine, name_id, uniform};

/// The switches shared by every adapter of one model: on/off, training mode (dropout) and
/// the dropout key of the passes that follow.
#[derive(Debug, Default)]
pub(crate) struct AdapterState {
    disabled: AtomicBool,
    training: AtomicBool,
    dropout_key: AtomicU64,
}

impl AdapterState {
    pub(crate) fn enabled(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed)
    }

    pub(crate) fn set_enabled(&self, on: bool) {
        self.disabled.store(!on, Ordering::Relaxed);
    }

    pub(crate) fn training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }

    pub(crate) fn set_training(&self, on: bool) {
        self.training.store(on, Ordering::Relaxed);
    }

    pub(crate) fn dropout_key(&self) -> u64 {
        self.dropout_key.load(Ordering::Relaxed)
    }

    pub(crate) fn set_dropout_key(&self, key: u64) {
        self.dropout_key.store(key, Ordering::Relaxed);
    }
}

/// The low-rank update of one projection: `(alpha / r) * dropout(x) A^T B^T`.
#[derive(Debug)]
pub(crate) struct LoraLinear {
    a: Tensor, // [r, in], the adapter dtype (f32, or f64 for an f64 model)
    b: Tensor, // [out, r]
    scaling: f64,
    dropout: f64,
    /// A stable id of the module (its name), mixed into its dropout masks.
    id: u64,
    state: Arc<AdapterState>,
}

impl LoraLinear {
    /// `base` (`x W^T + b`, `[.., out]`) plus the update of `x` `[.., in]` when the adapters
    /// are on. As PEFT: `x` is cast to the adapter's dtype, the sum is formed in the wider
    /// of the two dtypes and cast back to `base`'s.
    pub(crate) fn add_update(&self, base: Tensor, x: &Tensor) -> Tensor {
        if !self.state.enabled() {
            return base;
        }
        let mut x = x.to_kind(self.a.kind());
        if self.dropout > 0.0 && self.state.training() {
            x = self.drop(&x);
        }
        let update = x.linear(&self.a, None::<Tensor>).linear(&self.b, None::<Tensor>) * self.scaling;
        let kind = base.kind();
        (base + update).to_kind(kind)
    }

    /// Inverted dropout of `x` with the mask of key `(dropout key, module id)`: element `i`
    /// is kept iff `uniform(i) >= p`, and kept elements are divided by `1 - p`.
    fn drop(&self, x: &Tensor) -> Tensor {
        let key = combine(self.state.dropout_key(), self.id);
        let keep = uniform(key, &x.size(), x.device()).ge(self.dropout);
        x * keep.to_kind(x.kind()) / (1.0 - self.dropout)
    }
}

/// The adapters of a model being built, by module name (e.g.
/// `model.layers.0.self_attn.q_proj`); each linear layer takes its own while the model's
/// construction code runs.
#[derive(Debug)]
pub(crate) struct AdapterTable {
    modules: BTreeMap<String, (Tensor, Tensor)>,
    scaling: f64,
    dropout: f64,
    state: Arc<AdapterState>,
    taken: RefCell<BTreeSet<String>>,
}

impl AdapterTable {
    /// A table of `(A, B)` by module name.
    pub(crate) fn new(modules: BTreeMap<String, (Tensor, Tensor)>, scaling: f64, dropout: f64) -> Self {
        AdapterTable { modules, scaling, dropout, state: Arc::default(), taken: RefCell::default() }
    }

    /// The adapter of module `name`, if it has one.
    pub(crate) fn take(&self, name: &str) -> Option<LoraLinear> {
        let (a, b) = self.modules.get(name)?;
        self.taken.borrow_mut().insert(name.to_string());
        Some(LoraLinear {
            a: a.shallow_clone(),
            b: b.shallow_clone(),
            scaling: self.scaling,
            dropout: self.dropout,
            id: name_id(name),
            state: self.state.clone(),
        })
    }

    /// The modules whose adapter no layer took (none after a complete construction).
    pub(crate) fn not_taken(&self) -> Vec<String> {
        let taken = self.taken.borrow();
        self.modules.keys().filter(|n| !taken.contains(*n)).cloned().collect()
    }

    /// The modules and their `(A, B)`, and the shared switches.
    pub(crate) fn into_parts(self) -> (BTreeMap<String, (Tensor, Tensor)>, Arc<AdapterState>) {
        (self.modules, self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// With `A = B = I` and scale 1, the update is `dropout(x)` itself: about a share `p` of
    /// the elements is zero and the rest is `x / (1 - p)`.
    #[test]
    fn dropout_zeroes_a_share_p_and_rescales_the_rest() {
        let (n, p) = (64i64, 0.3);
        let eye = || Tensor::eye(n, (Kind::Float, tch::Device::Cpu));
        let table = AdapterTable::new(BTreeMap::from([("m".to_string(), (eye(), eye()))]), 1.0, p);
        let layer = table.take("m").unwrap();
        let x = Tensor::ones([100, n], (Kind::Float, tch::Device::Cpu));
        let zeros = x.zeros_like();
        assert!(layer.add_update(zeros.shallow_clone(), &x).equal(&x), "not training: no dropout");
        layer.state.set_training(true);
        layer.state.set_dropout_key(3);
        let y = layer.add_update(zeros.shallow_clone(), &x);
        let dropped = y.eq(0.0).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
        // 6400 draws: p +- 4 standard deviations (sd = sqrt(p (1 - p) / 6400) ~ 0.0057).
        assert!((dropped - p).abs() < 0.023, "dropped share {dropped}");
        let kept = y.masked_select(&y.ne(0.0));
        assert!((kept - 1.0 / (1.0 - p)).abs().max().double_value(&[]) < 1e-6);
        assert!(y.equal(&layer.add_update(zeros.shallow_clone(), &x)), "same key, same mask");
        layer.state.set_enabled(false);
        assert!(layer.add_update(zeros.shallow_clone(), &x).equal(&zeros), "off: the base output");
    }
}
