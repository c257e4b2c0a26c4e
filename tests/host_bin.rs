//! The stratbox command line, built inside the test crate so its tests can
//! run it as a child process (and kill it).

fn main() -> std::process::ExitCode {
    stratbox::cli::entry()
}
