//! The `lb` program under a name of its own, so integration tests can run
//! it (`CARGO_BIN_EXE_lb-under-test`) as a child process in a namespace.

fn main() -> std::process::ExitCode {
    lb_userspace::cli::main()
}
