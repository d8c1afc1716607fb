//! `lb`: the load balancer's agent. See `lb --help`.

fn main() -> std::process::ExitCode {
    lb_userspace::cli::main()
}
