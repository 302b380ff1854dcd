//! `allocwatch`: the command line (`allocwatch --help`); everything is in [`allocwatch::cli`].

fn main() -> std::process::ExitCode {
    allocwatch::cli::main()
}
