//! The `flujo` binary: `flujo lens ...` (everything lives in the flujo-lens crate).
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

fn main() -> std::process::ExitCode {
    flujo_lens::main()
}
