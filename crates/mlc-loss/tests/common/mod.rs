//! Independent f64 references for the tests: plain loops, no tensor code, no SVD.
#![allow(dead_code)]

use tch::{Device, Kind, Tensor};

/// Eigenvalues of the symmetric matrix `a` by cyclic Jacobi rotations (unsorted).
#[allow(clippy::needless_range_loop)] // rows p and q are updated together
pub fn symmetric_eigenvalues(mut a: Vec<Vec<f64>>) -> Vec<f64> {
    let n = a.len();
    for _sweep in 0..100 {
        let off: f64 = (0..n).map(|i| (0..n).filter(|&j| j != i).map(|j| a[i][j] * a[i][j]).sum::<f64>()).sum();
        if off < 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..n).map(|i| a[i][i]).collect()
}

/// Unit vector of `v` (zero stays zero).
pub fn unit(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if n == 0.0 {
        v.to_vec()
    } else {
        v.iter().map(|x| x / n).collect()
    }
}

/// Singular values (descending, `k` of them, zeros when `k > D`) of the matrix whose columns
/// are the unit vectors of `vectors`: square roots of the Gram matrix's eigenvalues.
/// Eigenvalues below 1e-13 are rounding noise of exact zeros (rank <= D) and are set to 0
/// before the square root, which would otherwise turn 1e-16 into 1e-8.
pub fn singular_values(vectors: &[Vec<f64>]) -> Vec<f64> {
    let z: Vec<Vec<f64>> = vectors.iter().map(|v| unit(v)).collect();
    let gram: Vec<Vec<f64>> =
        z.iter().map(|a| z.iter().map(|b| a.iter().zip(b).map(|(x, y)| x * y).sum()).collect()).collect();
    let mut s: Vec<f64> =
        symmetric_eigenvalues(gram).into_iter().map(|l| if l < 1e-13 { 0.0 } else { l.sqrt() }).collect();
    s.sort_by(|a, b| b.partial_cmp(a).unwrap());
    s
}

/// One group's MLC loss, `-ln( exp(s_1/tau) / sum_j exp(s_j/tau) )`.
pub fn group_mlc(vectors: &[Vec<f64>], tau: f64) -> f64 {
    let s = singular_values(vectors);
    let denominator: f64 = s.iter().map(|x| (x / tau).exp()).sum();
    -((s[0] / tau).exp() / denominator).ln()
}

/// One group's collinearity ratio `s_1^2 / sum s_i^2`.
pub fn group_collinearity(vectors: &[Vec<f64>]) -> f64 {
    let s = singular_values(vectors);
    s[0] * s[0] / s.iter().map(|x| x * x).sum::<f64>()
}

/// One group's mean pairwise cosine over pairs `i < j`.
pub fn group_cosine(vectors: &[Vec<f64>]) -> f64 {
    let z: Vec<Vec<f64>> = vectors.iter().map(|v| unit(v)).collect();
    let (mut sum, mut n) = (0.0, 0.0);
    for i in 0..z.len() {
        for j in i + 1..z.len() {
            sum += z[i].iter().zip(&z[j]).map(|(a, b)| a * b).sum::<f64>();
            n += 1.0;
        }
    }
    sum / n
}

/// Groups of `[G, K, D]` values as nested vectors, keeping only present variants.
pub fn present_groups(values: &[f64], shape: [usize; 3], mask: Option<&[bool]>) -> Vec<Vec<Vec<f64>>> {
    let [g, k, d] = shape;
    (0..g)
        .map(|gi| {
            (0..k)
                .filter(|&ki| mask.is_none_or(|m| m[gi * k + ki]))
                .map(|ki| values[(gi * k + ki) * d..(gi * k + ki + 1) * d].to_vec())
                .collect()
        })
        .collect()
}

/// The reference MLC loss: mean of [`group_mlc`] over groups with >= 2 present variants.
pub fn reference_mlc(values: &[f64], shape: [usize; 3], mask: Option<&[bool]>, tau: f64) -> f64 {
    let counted: Vec<f64> =
        present_groups(values, shape, mask).iter().filter(|g| g.len() >= 2).map(|g| group_mlc(g, tau)).collect();
    if counted.is_empty() {
        0.0
    } else {
        counted.iter().sum::<f64>() / counted.len() as f64
    }
}

/// A `[G, K, D]` tensor of `values` with the given kind.
pub fn tensor(values: &[f64], shape: [usize; 3], kind: Kind) -> Tensor {
    let dims: Vec<i64> = shape.iter().map(|&x| x as i64).collect();
    Tensor::from_slice(values).reshape(dims).to_kind(kind)
}

/// A `[G, K]` bool mask tensor.
pub fn mask_tensor(mask: &[bool], g: usize, k: usize) -> Tensor {
    Tensor::from_slice(mask).reshape([g as i64, k as i64])
}

/// `n` standard-normal f64 values from libtorch's generator seeded with `seed`.
pub fn random_values(n: usize, seed: i64) -> Vec<f64> {
    tch::manual_seed(seed);
    let t = Tensor::randn([n as i64], (Kind::Double, Device::Cpu));
    Vec::<f64>::try_from(&t).unwrap()
}

/// Scalar value of `f` at `values`, computed in f64.
pub fn value_at(f: &dyn Fn(&Tensor) -> Tensor, values: &[f64], shape: [usize; 3]) -> f64 {
    f(&tensor(values, shape, Kind::Double)).double_value(&[])
}

/// Autograd gradient of the scalar `f` at `values` (f64), flattened.
pub fn autograd(f: &dyn Fn(&Tensor) -> Tensor, values: &[f64], shape: [usize; 3]) -> Vec<f64> {
    let x = tensor(values, shape, Kind::Double).set_requires_grad(true);
    f(&x).backward();
    Vec::<f64>::try_from(&x.grad().flatten(0, -1)).unwrap()
}

/// Central finite differences of `f` at `values` with step `h`.
pub fn central_differences(f: &dyn Fn(&Tensor) -> Tensor, values: &[f64], shape: [usize; 3], h: f64) -> Vec<f64> {
    (0..values.len())
        .map(|i| {
            let mut plus = values.to_vec();
            let mut minus = values.to_vec();
            plus[i] += h;
            minus[i] -= h;
            (value_at(f, &plus, shape) - value_at(f, &minus, shape)) / (2.0 * h)
        })
        .collect()
}

/// Asserts `a` and `b` agree elementwise within `abs + rel * |b|`.
pub fn assert_close(a: &[f64], b: &[f64], abs: f64, rel: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= abs + rel * y.abs(), "{what}[{i}]: {x} vs {y}");
    }
}

/// Dot product.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
