//! Binary entry point: the global allocator, then the CLI (`customer_value::cli_main`).

mod alloc;

#[global_allocator]
static ALLOC: alloc::HugeAlloc = alloc::HugeAlloc;

fn main() -> std::process::ExitCode {
    customer_value::cli_main()
}
