//! Compile-time behaviour of the macros: each `ui/fail` file makes one mistake and its `.stderr`
//! is the one error it must give; `ui/pass` files must compile.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
