//! `aiproxy-control-plane`

// mimalloc, as on the nodes: under glibc's allocator the heap left fragmented by building large
// snapshots (10,000 projects) made every later allocation slower (free-list walks and
// consolidation were ≈38 % of the control plane's CPU while ingesting usage records).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    control_plane::entry::main()
}
