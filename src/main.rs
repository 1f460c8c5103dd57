//! Binary entry point: parse flags, set threads and logging, run, print one error line to
//! stderr and exit with the documented code (0 ok, 1 run failed and a retry may help, 2 usage
//! or config error, 3 the data failed its checks).

use std::process::ExitCode;

use clap::Parser;
use customer_value::cli::{self, Cli};

#[global_allocator]
static ALLOC: customer_value::alloc::HugeAlloc = customer_value::alloc::HugeAlloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.threads.filter(|&n| n > 0) {
        // Both pools read these before their first use.
        std::env::set_var("POLARS_MAX_THREADS", n.to_string());
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    cli::init_logging(cli.log_format);
    customer_value::signals::install();
    let result = cli::execute(cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::error_line(&format!("{e:#}")));
            ExitCode::from(e.exit_code())
        }
    }
}
