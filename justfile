# widealign tasks. Install just with `cargo install just`.

# Run the test suite (the README's test command)
test:
    cargo test --workspace --release

# Slow, large-width experiments marked #[ignore]
slow:
    cargo test --workspace --release -- --ignored --nocapture

# Criterion benchmarks of the whole stack (results in target/criterion)
bench:
    cargo bench -p widealign

# API docs for every crate, warnings denied
doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# The paper-style experiments end to end (results/ by default)
reproduce *ARGS:
    cargo run --release -- reproduce {{ARGS}}

# Format every crate
fmt:
    cargo fmt --all

# Lints, warnings denied
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --release -- -D warnings

# Everything CI checks
ci:
    .ci/run

# Infinite-width predictions at scale: widealign predict vs neural-tangents on Fashion-MNIST
# (10,000 and 60,000 training images; needs dataset-fashion-mnist and /tmp/venv-nt)
predict-scale OUT="/tmp/predict-results":
    cargo build --release -p widealign-cli
    cargo build --release -p widealign-ntk --example predict_solvers
    scripts/perf/predict_scale.sh {{OUT}}
