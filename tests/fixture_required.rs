//! The integration tests need the fixture child, built only with `--features
//! test-fixture` (Cargo.toml leaves them out without it). A plain `cargo test` fails here
//! and names the command, instead of passing on the unit tests alone.

#[cfg(not(feature = "test-fixture"))]
#[test]
fn the_integration_tests_need_the_fixture_feature() {
    panic!(
        "the integration tests were left out: run `cargo test --features test-fixture` (README \"Running the tests\")"
    );
}
