//! `aiproxy-control-plane`

fn main() {
    control_plane::entry::main()
}
