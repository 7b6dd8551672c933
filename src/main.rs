//! The `flujo` binary: `flujo lens ...` (everything lives in the flujo-lens crate).

fn main() -> std::process::ExitCode {
    flujo_lens::main()
}
