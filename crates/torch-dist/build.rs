//! Compiles cpp/shim.cpp against the libtorch that tch builds with (`LIBTORCH`, set by
//! scripts/bootstrap in .cargo/config.toml).
//!
//! c10d's ProcessGroupGloo.hpp includes five of gloo's headers, which the torch wheel does not
//! ship. When the system has them (`/usr/include/gloo`, e.g. Debian's libgloo-dev), they are
//! used; otherwise cpp/gloo-compat, our declarations of the few names the header needs.
//! `TORCH_DIST_GLOO_HEADERS=system|compat` forces one (tests build both ways).

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=TORCH_DIST_GLOO_HEADERS");
    let libtorch = PathBuf::from(std::env::var("LIBTORCH").unwrap_or_else(|_| {
        panic!("torch-dist: LIBTORCH is not set; run scripts/bootstrap (it writes .cargo/config.toml)")
    }));
    let include = libtorch.join("include");
    let header = include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp");
    assert!(header.exists(), "torch-dist: {} is missing; is LIBTORCH a torch wheel's torch/ folder?", header.display());

    let system = Path::new("/usr/include/gloo/rendezvous/store.h").exists();
    let gloo = match std::env::var("TORCH_DIST_GLOO_HEADERS").as_deref() {
        Ok("system") if !system => {
            panic!("torch-dist: TORCH_DIST_GLOO_HEADERS=system, but /usr/include/gloo is absent")
        }
        Ok("system") => "system",
        Ok("compat") => "compat",
        Ok(other) => panic!("torch-dist: TORCH_DIST_GLOO_HEADERS must be `system` or `compat`, not `{other}`"),
        Err(_) if system => "system",
        Err(_) => "compat",
    };
    println!("cargo:rustc-env=TORCH_DIST_GLOO_HEADERS={gloo}");

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("cpp/shim.cpp")
        .std("c++17")
        .define("USE_C10D_GLOO", None)
        .define("USE_DISTRIBUTED", None)
        .define(
            "_GLIBCXX_USE_CXX11_ABI",
            if std::env::var("LIBTORCH_CXX11_ABI").as_deref() == Ok("0") { "0" } else { "1" },
        )
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .warnings(false);
    if gloo == "compat" {
        build.include("cpp/gloo-compat");
    }
    build.compile("polyalign_torch_dist");
    // The symbols live in libtorch_cpu.so and libc10.so, which torch-sys links already.
    println!("cargo:rustc-link-search=native={}", libtorch.join("lib").display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
