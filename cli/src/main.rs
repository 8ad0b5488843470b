//! The `pgnotify` command (listen, notify, demo, bench). Not written yet: it
//! only says so.

fn main() {
    eprintln!("pgnotify: the command-line interface is not implemented yet");
    std::process::exit(2);
}
