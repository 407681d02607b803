# tickwire task runner: one recipe per check. `just --list` shows them.
# Every recipe is a plain command, so the same checks run without `just` too.

# Run the server on the bundled demo data (http://127.0.0.1:8080).
run *ARGS:
    cargo run --release --locked -- {{ARGS}}

# Install what the tests need (into folders of the repo) and run every test: what CI runs.
test:
    scripts/test

# The Rust tests only.
unit:
    cargo test --workspace --locked

# criterion benchmarks of the encode and fan-out path.
bench *ARGS:
    cargo bench --workspace --locked {{ARGS}}

# Format the code.
fmt:
    cargo fmt --all

# Lints: rustfmt check and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# API docs, with warnings as errors.
doc:
    RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked

# Regenerate the bundled demo dataset.
demo-data:
    cargo run -p tickwire-examples --example gen_demo_data --locked -- data/demo
