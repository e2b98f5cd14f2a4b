//! `aiproxy-data-plane`

fn main() {
    data_plane::entry::main()
}
