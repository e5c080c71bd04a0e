//! Compile-time behaviour of the macros: each `ui/fail` file makes one mistake and its `.stderr`
//! is the one error it must give; `ui/pass` files must compile.
//!
//! The toolchain: nothing pins it. A `rust-toolchain.toml` would make rustup download the
//! pinned release, which a machine with only its installed toolchain and no network cannot do.
//! Instead the messages are the macros' own as far as rustc allows (`on_unimplemented` on
//! traits whose impls rustc is told not to recommend, errors spanned on the user's tokens), so
//! what is left of rustc's text in the `.stderr` files is its oldest, steadiest wording. Should a
//! newer rustc still word something differently, this test fails saying which release wrote the
//! files: read the diff, and if only rustc's wording moved, regenerate them with
//! `TRYBUILD=overwrite cargo test -p entities-runtime --test ui` and update `WRITTEN_BY`.

/// The rustc release that wrote the `.stderr` files.
const WRITTEN_BY: &str = "rustc 1.95";

#[test]
fn ui() {
    let checked = std::panic::catch_unwind(|| {
        let t = trybuild::TestCases::new();
        t.compile_fail("tests/ui/fail/*.rs");
        t.pass("tests/ui/pass/*.rs");
        // The cases run when `t` is dropped, here.
    });
    if let Err(failure) = checked {
        let running = rustc_version();
        if !running.starts_with(&format!("{WRITTEN_BY}.")) {
            eprintln!(
                "the .stderr files were written by {WRITTEN_BY}; this is {running}. If only \
                 rustc's wording changed, regenerate them (see tests/ui.rs)."
            );
        }
        std::panic::resume_unwind(failure);
    }
}

/// `rustc --version` of the compiler trybuild runs (`$RUSTC`, else `rustc`).
fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|error| format!("an unknown rustc ({error})"))
}
