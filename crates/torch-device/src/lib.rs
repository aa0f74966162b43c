//! # torch-device
//!
//! Choose the libtorch device at run time: `"cpu"`, `"cuda"` or `"cuda:N"`.
//!
//! Our binaries link `libtorch_cpu` only, so that the same binary runs on machines without
//! CUDA (whose CUDA libraries, cuDNN, cuBLAS…, are not installed). `libtorch_cuda.so` is
//! loaded the first time a CUDA device is asked for, which registers libtorch's CUDA backend;
//! only then does `tch::Cuda::is_available()` answer for the machine. Call
//! [`device_from_str`] (or [`load_cuda_backend`]) before creating any CUDA tensor.
//!
//! ```
//! use torch_device::{device_from_str, DeviceError};
//!
//! assert_eq!(device_from_str("cpu")?, tch::Device::Cpu);
//! assert!(matches!(device_from_str("tpu"), Err(DeviceError::Unknown(_))));
//! // On a machine without CUDA this is an error that says why, never a crash.
//! if let Err(e) = device_from_str("cuda:0") {
//!     assert!(e.to_string().contains("cuda:0"));
//! }
//! # Ok::<(), DeviceError>(())
//! ```
//!
//! Main items: [`device_from_str`], [`load_cuda_backend`], [`cuda_if_available`], [`DeviceError`].

use std::sync::OnceLock;
use tch::Device;

/// Why a device could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device string is not `cpu`, `cuda` or `cuda:N`.
    #[error("unknown device `{0}`: use \"cpu\", \"cuda\" or \"cuda:N\"")]
    Unknown(String),
    /// CUDA was asked for but cannot be used on this machine.
    #[error("CUDA device `{device}` is not usable: {why}")]
    CudaUnavailable {
        /// The requested device.
        device: String,
        /// What failed (loading libtorch_cuda, no GPU, index out of range).
        why: String,
    },
}

/// Parses `cpu`, `cuda` (= `cuda:0`) or `cuda:N` and, for CUDA, loads libtorch's CUDA
/// backend and checks that device `N` exists.
pub fn device_from_str(spec: &str) -> Result<Device, DeviceError> {
    let spec_trim = spec.trim();
    let index = match spec_trim {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        s => match s.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => return Err(DeviceError::Unknown(spec.to_string())),
        },
    };
    let unavailable = |why: String| DeviceError::CudaUnavailable { device: spec_trim.to_string(), why };
    load_cuda_backend().map_err(|e| unavailable(e.clone()))?;
    let count = tch::Cuda::device_count() as usize;
    if index >= count {
        return Err(unavailable(format!("this machine has {count} CUDA device(s)")));
    }
    Ok(Device::Cuda(index))
}

/// Loads `libtorch_cuda.so` once per process (found through the binary's rpath or
/// `LD_LIBRARY_PATH`) and checks that libtorch then sees CUDA.
///
/// Returns the reason as text when it fails; the result is remembered, so later calls are free.
pub fn load_cuda_backend() -> Result<(), &'static String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            // SAFETY: loading libtorch's own CUDA library only runs its static initialisers,
            // which register the CUDA backend with the already-loaded libtorch_cpu.
            let lib = unsafe {
                libloading::os::unix::Library::open(
                    Some("libtorch_cuda.so"),
                    libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                )
            }
            .map_err(|e| format!("could not load libtorch_cuda.so ({e}); install the CUDA build of libtorch"))?;
            std::mem::forget(lib); // keep it loaded for the life of the process
            if tch::Cuda::is_available() {
                Ok(())
            } else {
                Err("libtorch_cuda.so loaded, but libtorch sees no CUDA device".to_string())
            }
        })
        .as_ref()
        .map(|_| ())
}

/// The first CUDA device when one can be used, else `None` (for tests and examples that run
/// on a GPU when the machine has one and skip otherwise).
pub fn cuda_if_available() -> Option<tch::Device> {
    device_from_str("cuda:0").ok()
}

/// The bfloat16 instruction sets this CPU reports (flags of `/proc/cpuinfo` containing
/// `bf16`, e.g. `avx512_bf16`, `amx_bf16`); empty when it has none, or off Linux.
///
/// With one of them, libtorch multiplies bf16 matrices several times faster than f32 (4.4x
/// measured on an AVX-512 BF16 machine, docs/benchmarks.md); without, it emulates bf16 and
/// runs several times slower than f32.
pub fn cpu_bf16_instructions() -> Vec<String> {
    bf16_flags(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default())
}

/// The bf16 flags of the first `flags` line of a `/proc/cpuinfo` text, sorted.
fn bf16_flags(cpuinfo: &str) -> Vec<String> {
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or_default();
    let mut found: Vec<String> = flags
        .split(':')
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter(|f| f.contains("bf16"))
        .map(str::to_string)
        .collect();
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn bf16_flags_are_read_from_the_flags_line() {
        let info = "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16 sse\n\
                    bugs\t\t: spectre_v1\nflags\t\t: other_bf16\n";
        assert_eq!(super::bf16_flags(info), ["amx_bf16", "avx512_bf16"]);
        assert!(super::bf16_flags("flags\t: fpu avx2 sse4_2\n").is_empty());
        assert!(super::bf16_flags("").is_empty());
        for f in super::cpu_bf16_instructions() {
            assert!(f.contains("bf16"), "{f}");
        }
    }

    use super::*;

    #[test]
    fn parses_device_strings() {
        assert_eq!(device_from_str("cpu").unwrap(), Device::Cpu);
        assert_eq!(device_from_str(" cpu ").unwrap(), Device::Cpu);
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""] {
            assert!(matches!(device_from_str(bad), Err(DeviceError::Unknown(_))), "{bad}");
        }
    }

    #[test]
    fn cuda_is_an_error_or_a_real_device() {
        match device_from_str("cuda") {
            Ok(d) => {
                assert_eq!(d, Device::Cuda(0));
                let t = tch::Tensor::ones([2], (tch::Kind::Float, d));
                assert_eq!(t.sum(tch::Kind::Float).double_value(&[]), 2.0);
            }
            Err(e) => assert!(matches!(e, DeviceError::CudaUnavailable { .. }), "{e}"),
        }
        assert!(device_from_str("cuda:4096").is_err(), "no machine has that many devices");
    }
}
