//! The `stratbox` binary.

fn main() -> std::process::ExitCode {
    stratbox::cli::entry()
}
