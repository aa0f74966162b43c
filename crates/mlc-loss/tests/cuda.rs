//! The same checks on a CUDA device, when one is available (skipped otherwise): values equal
//! the CPU's, gradients stay finite at degenerate points with the GPU's SVD, and inputs on
//! two devices are an error.

mod common;

use align_losses::LossError;
use common::*;
use mlc_loss::{collinearity_ratio, mlc_loss, MlcError};
use tch::{Device, Kind, Tensor};

/// The first CUDA device, or `None` (and a note on stderr) when the build has none: these
/// tests then check nothing, and say so.
fn cuda() -> Option<Device> {
    let device = torch_device::cuda_if_available();
    if device.is_none() {
        eprintln!("no CUDA device: skipped");
    }
    device
}

#[test]
fn cuda_values_equal_cpu_values() {
    let Some(gpu) = cuda() else { return };
    for kind in [Kind::Double, Kind::Float, Kind::BFloat16] {
        let values = random_values(4 * 5 * 64, 3);
        let mask = mask_tensor(&[true, true, true, false, true].repeat(4), 4, 5);
        let x = tensor(&values, [4, 5, 64], kind);
        let cpu = mlc_loss(&x, Some(&mask), 1.0).unwrap().double_value(&[]);
        let on_gpu = mlc_loss(&x.to_device(gpu), Some(&mask.to_device(gpu)), 1.0).unwrap();
        assert_eq!(on_gpu.device(), gpu);
        assert!((on_gpu.double_value(&[]) - cpu).abs() < 1e-5 * (1.0 + cpu), "{kind:?}");
        let ratio = collinearity_ratio(&x.to_device(gpu), None).unwrap().to_device(Device::Cpu);
        let ratio_cpu = collinearity_ratio(&x, None).unwrap();
        assert!((ratio - ratio_cpu).abs().max().double_value(&[]) < 1e-5);
    }
}

#[test]
fn cuda_gradients_are_finite_at_degenerate_points_and_match_cpu_at_random_ones() {
    let Some(gpu) = cuda() else { return };
    let v = [0.3, -1.2, 0.5, 2.0];
    let mut orthonormal = vec![0.0; 12];
    for j in 0..3 {
        orthonormal[j * 4 + j] = 1.0;
    }
    let cases: Vec<(Vec<f64>, [usize; 3])> = vec![
        ([v, v, v].concat(), [1, 3, 4]),
        ([v, v.map(|x| -2.0 * x)].concat(), [1, 2, 4]),
        (orthonormal, [1, 3, 4]),
        ([[0.6, -0.8]; 4].concat(), [1, 4, 2]),
        (random_values(2 * 5 * 3, 9), [2, 5, 3]),
    ];
    for (values, shape) in cases {
        let x = tensor(&values, shape, Kind::Double).to_device(gpu).set_requires_grad(true);
        mlc_loss(&x, None, 1.0).unwrap().backward();
        let grad = x.grad().to_device(Device::Cpu);
        assert!(bool::try_from(grad.isfinite().all()).unwrap(), "{shape:?}: {grad:?}");
    }
    let values = random_values(2 * 3 * 6, 10);
    let f = |x: &Tensor| mlc_loss(&x.to_device(gpu), None, 0.7).unwrap();
    let x = tensor(&values, [2, 3, 6], Kind::Double).to_device(gpu).set_requires_grad(true);
    f(&x).backward();
    let on_gpu = Vec::<f64>::try_from(&x.grad().to_device(Device::Cpu).flatten(0, -1)).unwrap();
    let fd = central_differences(&|x: &Tensor| f(x).to_device(Device::Cpu), &values, [2, 3, 6], 1e-6);
    assert_close(&on_gpu, &fd, 1e-7, 1e-5, "cuda gradient");
}

#[test]
fn inputs_on_two_devices_are_an_error() {
    let Some(gpu) = cuda() else { return };
    let x = Tensor::randn([2, 3, 4], (Kind::Float, gpu));
    let mask = Tensor::ones([2, 3], (Kind::Bool, Device::Cpu));
    assert!(matches!(mlc_loss(&x, Some(&mask), 1.0), Err(MlcError::Input(LossError::Device { .. }))));
}
