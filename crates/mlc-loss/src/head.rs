//! The optional trainable projection head of MLC (methods.md §1 step 2): `r = W h + b`.

use crate::{Mlc, Result};
use align_losses::check::{check_device, check_float, check_parameter_where, check_shape, check_shape_where};
use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

/// A trainable linear map `r = W h + b` (`W: [d, D]`, `b: [d]`) applied to every hidden state
/// before MLC normalises it. The MLC paper found a plain linear head better than deeper
/// ones; no head is the identity.
///
/// Its two variables, `weight` and `bias`, live in the caller's [`tch::nn::VarStore`] under
/// the [`Path`] given to [`ProjectionHead::new`], so they are saved, loaded and optimised
/// with the model's variables.
///
/// Initialisation: `b = 0`; `W = I` when `d == D` (the head starts as the identity, so
/// training starts from the no-head loss); otherwise a random semi-orthogonal matrix
/// (`tch::nn::Init::Orthogonal`, gain 1): for `d > D` its columns are orthonormal and it
/// preserves every inner product exactly, for `d < D` its rows are orthonormal (a random
/// orthogonal projection). Either way no direction is stretched at the start.
///
/// The head's math runs in loss precision (f32, or f64 for f64 states), whatever the dtype of
/// its variables: a bf16 `VarStore` works, and gradients flow back to its variables.
#[derive(Debug)]
pub struct ProjectionHead {
    weight: Tensor, // [d, D]
    bias: Tensor,   // [d]
}

impl ProjectionHead {
    /// Creates `weight` (`[output_dim, input_dim]`) and `bias` (`[output_dim]`) under `path`,
    /// initialised as described on the type. `input_dim` is the model's hidden size `D`,
    /// `output_dim` the head size `d` (config key `head_dim`); both must be `>= 1`.
    ///
    /// ```
    /// use tch::{nn, Device, Kind, Tensor};
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let head = mlc_loss::ProjectionHead::new(&(vs.root() / "mlc_head"), 16, 8)?;
    /// let r = head.forward(&Tensor::randn([4, 3, 16], (Kind::Float, Device::Cpu)))?;
    /// assert_eq!(r.size(), [4, 3, 8]);
    /// assert_eq!(vs.variables().len(), 2);
    /// # Ok::<(), mlc_loss::MlcError>(())
    /// ```
    pub fn new(path: &Path, input_dim: i64, output_dim: i64) -> Result<Self> {
        for (parameter, value) in [("input_dim", input_dim), ("output_dim", output_dim)] {
            let why = "the head's sizes must be >= 1 (use no head for the identity)";
            check_parameter_where(Mlc::KIND, parameter, value as f64, why, |size| size >= 1.0)?;
        }
        let weight = if input_dim == output_dim {
            path.f_var_copy("weight", &Tensor::f_eye(input_dim, (Kind::Float, path.device()))?)?
        } else {
            path.f_var("weight", &[output_dim, input_dim], Init::Orthogonal { gain: 1.0 })?
        };
        let bias = path.f_var("bias", &[output_dim], Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }

    /// A head from existing tensors: `weight` `[d, D]` and `bias` `[d]`, floating, one device
    /// (e.g. loaded from elsewhere; they are used as given, gradients included).
    pub fn from_tensors(weight: Tensor, bias: Tensor) -> Result<Self> {
        check_shape(&weight, "head weight", &[None, None], "[d, D]")?;
        let d = weight.size()[0];
        check_shape(&bias, "head bias", &[Some(d)], &format!("[d] = [{d}] (rows of the weight)"))?;
        check_float(&weight, "head weight")?;
        check_float(&bias, "head bias")?;
        check_device(&bias, "head bias (must be on the device of the head weight)", weight.device())?;
        Ok(Self { weight, bias })
    }

    /// The input size `D`.
    pub fn input_dim(&self) -> i64 {
        self.weight.size()[1]
    }

    /// The output size `d`.
    pub fn output_dim(&self) -> i64 {
        self.weight.size()[0]
    }

    /// `[..., D] -> [..., d]`: `W h + b` for every vector `h` along the last dimension, in
    /// loss precision (half inputs in f32, f64 kept).
    pub fn forward(&self, states: &Tensor) -> Result<Tensor> {
        let d = self.input_dim();
        let words = format!("[..., D] with D = {d} (the head's input size)");
        check_shape_where(states, "states (projection head input)", &words, |s| s.last() == Some(&d))?;
        check_float(states, "states")?;
        check_device(&self.weight, "projection head (must be on the device of `states`)", states.device())?;
        let kind = if states.kind() == Kind::Double { Kind::Double } else { Kind::Float };
        let x = states.f_to_kind(kind)?; // [..., D]
        let w = self.weight.f_to_kind(kind)?; // [d, D]
        let b = self.bias.f_to_kind(kind)?; // [d]
        Ok(x.f_matmul(&w.f_transpose(0, 1)?)?.f_add(&b)?) // [..., d]
    }

    /// The head's trainable tensors: `[weight, bias]`.
    pub fn variables(&self) -> Vec<Tensor> {
        vec![self.weight.shallow_clone(), self.bias.shallow_clone()]
    }
}
