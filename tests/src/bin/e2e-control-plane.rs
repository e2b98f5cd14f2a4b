fn main() {
    control_plane::entry::main()
}
