//! Links the unwinder statically into the glibc build, as `gcc -static-libgcc` does for a
//! C++ program: Rust's std asks for `libgcc_s.so.1`, whose load runs a constructor
//! (`__cpu_indicator_init`) that executes `cpuid` a dozen times, and on a virtual machine
//! each `cpuid` exits to the hypervisor (~7.75 µs measured here): with the library mapped
//! and relocated too, that was ~0.3 ms of every `gsup run` (issue 14, bench/README.md).
//! `libgcc_eh.a` (GCC's static unwinder) comes first on the link line, so the linker's
//! `--as-needed` then drops `libgcc_s`. Where the C compiler has no `libgcc_eh.a` (not
//! GCC, or not glibc) nothing changes, nor for a cross build (the host's `cc` cannot
//! speak for the target).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    // `cc` below is the host's compiler: it can only speak for a native build.
    if std::env::var("HOST").ok() != std::env::var("TARGET").ok() {
        return;
    }
    let gnu = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "gnu");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let static_crt = std::env::var("CARGO_CFG_TARGET_FEATURE").is_ok_and(|f| f.split(',').any(|f| f == "crt-static"));
    if !(gnu && linux) || static_crt {
        return;
    }
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    // A build script has no reaper of gsup's: waiting on its own child is right here.
    #[allow(clippy::disallowed_methods)]
    let Ok(output) = Command::new(&compiler).arg("-print-file-name=libgcc_eh.a").output() else {
        return;
    };
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    // An answer without a directory means the compiler does not know the file.
    let (true, Some(dir)) = (path.is_absolute() && path.is_file(), path.parent()) else {
        return;
    };
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
}
