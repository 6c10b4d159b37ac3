//! Proves that type errors in a topology are compile errors: a serde that does not match its
//! stream's type, a closure taking the wrong type, and merging streams of different types.
//!
//! The expected compiler output lives next to each case in `tests/ui/*.stderr`; after a
//! deliberate change (or a new rustc), regenerate it with
//! `TRYBUILD=overwrite cargo test -p engine --test compile_fail` and review the diff.

#[test]
fn mistyped_topologies_do_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
