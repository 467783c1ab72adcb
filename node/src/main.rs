//! The `consentry` binary.

fn main() -> std::process::ExitCode {
    consentry_node::cli::main()
}
