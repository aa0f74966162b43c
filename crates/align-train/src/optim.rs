//! AdamW with float32 state (and float32 master weights for half-precision parameters),
//! global gradient-norm clipping.

use tch::{Kind, Tensor};

/// AdamW's hyper-parameters (Loshchilov & Hutter 2019, decoupled weight decay), as
/// `torch.optim.AdamW` defines them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// `beta1`, `beta2`.
    pub betas: [f64; 2],
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Decoupled weight decay (multiplies `lr * w`).
    pub weight_decay: f64,
}

/// `(1 - b1^t, 1 - b2^t)` at step `t`.
pub(crate) fn bias_corrections(config: &AdamWConfig, t: u64) -> (f64, f64) {
    let [b1, b2] = config.betas;
    (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32))
}

/// One optimised tensor: the model's parameter and the optimizer's float32 state.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) param: Tensor,
    /// float32 copy of a half-precision parameter (the update is applied here, then copied
    /// into `param`, so small updates are not lost to bf16 rounding).
    pub(crate) master: Option<Tensor>,
    pub(crate) m: Tensor,
    pub(crate) v: Tensor,
}

impl Slot {
    /// A slot for `param`: zero moments, and a float32 master copy of a half-precision one.
    pub(crate) fn new(param: Tensor) -> Self {
        let master = matches!(param.kind(), Kind::BFloat16 | Kind::Half).then(|| param.detach().to_kind(Kind::Float));
        let m = param.zeros_like().to_kind(Kind::Float);
        let v = m.zeros_like();
        Slot { param, master, m, v }
    }

    /// Bytes of its state: the moments and the master copy.
    pub(crate) fn state_bytes(&self) -> usize {
        let bytes = |t: &Tensor| t.numel() * t.kind().elt_size_in_bytes();
        bytes(&self.m) + bytes(&self.v) + self.master.as_ref().map_or(0, bytes)
    }

    /// One AdamW update of this slot with gradient `g` (any float kind), learning rate `lr`
    /// and bias corrections `(c1, c2) = (1 - b1^t, 1 - b2^t)`.
    pub(crate) fn update(&mut self, g: &Tensor, lr: f64, (c1, c2): (f64, f64), config: &AdamWConfig) {
        let [b1, b2] = config.betas;
        // In place, as torch.optim.AdamW's single-tensor path: besides a float32 copy of a
        // half-precision gradient, two temporaries the size of the parameter at most (the
        // squared gradient, then the denominator), not one per operation.
        let g = g.to_kind(Kind::Float);
        let _ = self.m.lerp_(&g, 1.0 - b1); // m = b1 m + (1 - b1) g
        let _ = self.v.lerp_(&g.square(), 1.0 - b2); // v = b2 v + (1 - b2) g^2
        if lr == 0.0 {
            return; // the moments move, the weights do not (a warm-up's first step)
        }
        let mut denom = self.v.sqrt();
        let _ = denom.g_div_scalar_(c2.sqrt());
        let _ = denom.g_add_scalar_(config.eps);
        // w += m / (denom * -(c1 / lr)) is w -= (lr / c1) m / denom, without a scaled copy of m.
        let _ = denom.g_mul_scalar_(-c1 / lr);
        let mut w = self.master.as_ref().map(Tensor::shallow_clone).unwrap_or_else(|| self.param.detach());
        let _ = w.g_mul_scalar_(1.0 - lr * config.weight_decay);
        let _ = w.addcdiv_(&self.m, &denom);
        if self.master.is_some() {
            self.param.detach().copy_(&w); // rounded to the parameter's half precision
        }
    }
}

/// AdamW over a list of named tensors.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    names: Vec<String>,
    slots: Vec<Slot>,
    /// Steps taken (for bias correction).
    pub step: u64,
}

impl AdamW {
    /// An optimizer of `params` (which must require gradients).
    pub fn new(params: Vec<(String, Tensor)>, config: AdamWConfig) -> Self {
        let mut names = Vec::new();
        let slots = params
            .into_iter()
            .map(|(name, param)| {
                names.push(name);
                Slot::new(param)
            })
            .collect();
        Self { config, names, slots, step: 0 }
    }

    /// The optimised tensors, in order (shallow copies: they share storage and `.grad`).
    pub fn parameters(&self) -> Vec<Tensor> {
        self.slots.iter().map(|s| s.param.shallow_clone()).collect()
    }

    /// Bytes of optimizer state held (moments and master weights).
    pub fn state_bytes(&self) -> usize {
        self.slots.iter().map(Slot::state_bytes).sum()
    }

    /// The global L2 norm of all gradients (float32; 0 for parameters without a gradient).
    pub fn grad_norm(&self) -> f64 {
        let _guard = tch::no_grad_guard();
        let mut total = 0.0;
        for s in &self.slots {
            let g = s.param.grad();
            if g.defined() {
                total += g.to_kind(Kind::Float).square().sum(Kind::Float).double_value(&[]);
            }
        }
        total.sqrt()
    }

    /// Scales every gradient by `factor` (clipping).
    pub fn scale_grads(&mut self, factor: f64) {
        let _guard = tch::no_grad_guard();
        for s in &self.slots {
            let mut g = s.param.grad();
            if g.defined() {
                let _ = g.g_mul_scalar_(factor);
            }
        }
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            let mut g = s.param.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// One AdamW update with learning rate `lr`:
    /// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
    /// `w -= lr (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd w)`.
    pub fn step(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let (c1, c2) = bias_corrections(&self.config, self.step);
        for s in &mut self.slots {
            let g = s.param.grad();
            if g.defined() {
                s.update(&g, lr, (c1, c2), &self.config);
            }
        }
    }

    /// The optimizer state as named tensors (`m.<name>`, `v.<name>`, `master.<name>`), for
    /// checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (name, s) in self.names.iter().zip(&self.slots) {
            out.push((format!("m.{name}"), s.m.shallow_clone()));
            out.push((format!("v.{name}"), s.v.shallow_clone()));
            if let Some(master) = &s.master {
                out.push((format!("master.{name}"), master.shallow_clone()));
            }
        }
        out
    }

    /// Restores [`AdamW::state`] and the step count; a missing or mis-shaped tensor is an
    /// error naming it. Master weights are also copied into the parameters.
    pub fn load_state(&mut self, state: &[(String, Tensor)], step: u64) -> Result<(), String> {
        let _guard = tch::no_grad_guard();
        let find = |key: &str| state.iter().find(|(n, _)| n == key).map(|(_, t)| t);
        for (name, s) in self.names.iter().zip(&mut self.slots) {
            for (prefix, target) in [("m", &mut s.m), ("v", &mut s.v)] {
                let key = format!("{prefix}.{name}");
                let t = find(&key).ok_or_else(|| format!("optimizer state lacks `{key}`"))?;
                if t.size() != target.size() {
                    return Err(format!(
                        "optimizer state `{key}` has shape {:?}, expected {:?}",
                        t.size(),
                        target.size()
                    ));
                }
                target.copy_(&t.to_device(target.device()));
            }
            if let Some(master) = &mut s.master {
                let key = format!("master.{name}");
                let t = find(&key).ok_or_else(|| format!("optimizer state lacks `{key}`"))?;
                master.copy_(&t.to_device(master.device()));
                s.param.detach().copy_(&master.to_kind(s.param.kind()));
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain-f64 AdamW step on scalars, written from the formula.
    fn reference_step(w: f64, m: f64, v: f64, g: f64, t: i32, lr: f64, c: &AdamWConfig) -> (f64, f64, f64) {
        let [b1, b2] = c.betas;
        let m = b1 * m + (1.0 - b1) * g;
        let v = b2 * v + (1.0 - b2) * g * g;
        let mhat = m / (1.0 - b1.powi(t));
        let vhat = v / (1.0 - b2.powi(t));
        (w - lr * (mhat / (vhat.sqrt() + c.eps) + c.weight_decay * w), m, v)
    }

    #[test]
    fn matches_the_formula_over_several_steps() {
        let c = AdamWConfig { betas: [0.9, 0.99], eps: 1e-8, weight_decay: 0.1 };
        let w0 = [0.5f64, -1.5, 2.0];
        let p = Tensor::from_slice(&w0).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("p".into(), p.shallow_clone())], c);
        let (mut w, mut m, mut v) = (w0.to_vec(), vec![0.0; 3], vec![0.0; 3]);
        for t in 1..=4 {
            opt.zero_grad();
            (&p * &p).sum(Kind::Double).backward(); // grad = 2 w
            let lr = 0.01 * t as f64;
            opt.step(lr);
            for i in 0..3 {
                (w[i], m[i], v[i]) = reference_step(w[i], m[i], v[i], 2.0 * w[i], t, lr, &c);
            }
            let got = Vec::<f64>::try_from(&p.detach()).unwrap();
            for i in 0..3 {
                assert!((got[i] - w[i]).abs() < 1e-6, "step {t}: {got:?} vs {w:?}");
            }
        }
    }

    #[test]
    fn grad_norm_and_clipping() {
        let p = Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
        let mut opt = AdamW::new(
            vec![("p".into(), p.shallow_clone())],
            AdamWConfig { betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0 },
        );
        (&p * 1.0).sum(Kind::Float).backward();
        assert!((opt.grad_norm() - 2f64.sqrt()).abs() < 1e-6);
        opt.scale_grads(0.5);
        assert!((opt.grad_norm() - 2f64.sqrt() / 2.0).abs() < 1e-6);
    }

    #[test]
    fn bf16_parameters_keep_f32_master_weights() {
        let p = Tensor::from_slice(&[1.0f32]).to_kind(Kind::BFloat16).set_requires_grad(true);
        let mut opt = AdamW::new(
            vec![("p".into(), p.shallow_clone())],
            AdamWConfig { betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0 },
        );
        for _ in 0..10 {
            opt.zero_grad();
            (&p * 1.0).sum(Kind::Float).backward();
            opt.step(1e-4); // each step moves the master by ~1e-4, below bf16's resolution at 1.0
        }
        let master = opt.state().into_iter().find(|(n, _)| n == "master.p").unwrap().1;
        assert!((master.double_value(&[0]) - (1.0 - 1e-3)).abs() < 1e-5, "master accumulates small updates");
        assert_eq!(p.kind(), Kind::BFloat16);
    }

    #[test]
    fn state_round_trip() {
        let c = AdamWConfig { betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0 };
        let p = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("p".into(), p.shallow_clone())], c);
        (&p * &p).sum(Kind::Float).backward();
        opt.step(0.1);
        let state = opt.state();
        let q = p.detach().copy().set_requires_grad(true);
        let mut other = AdamW::new(vec![("p".into(), q)], c);
        other.load_state(&state, opt.step).unwrap();
        assert_eq!(other.step, 1);
        assert!(other.state()[0].1.equal(&state[0].1));
        assert!(other.load_state(&[], 1).unwrap_err().contains("m.p"));
    }
}
