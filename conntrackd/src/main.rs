//! The `conntrackd` binary: see the library root for the program.
fn main() -> std::process::ExitCode {
    conntrackd::main_entry()
}
