fn main() {
    data_plane::entry::main()
}
