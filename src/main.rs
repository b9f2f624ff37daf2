// mimalloc: glibc's malloc (with its arena consolidation) was about a tenth of a proxied
// request's CPU in the profile of BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    regate::cli::main()
}
