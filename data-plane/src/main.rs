//! `aiproxy-data-plane`

/// mimalloc instead of glibc's allocator: allocation and copying were ≈24 % of a node's CPU
/// under load (perf), most of it in glibc's `malloc`/`free` paths (see bench/results).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    data_plane::entry::main()
}
