use clap::Parser;

fn main() {
    let cli = honeydue_shim::cli::Cli::parse();
    std::process::exit(honeydue_shim::cli::run(cli));
}
