//! sdme-import SOURCE NAME: see sdme-import(1).

fn main() {
    eprintln!("sdme-import: not built yet");
    std::process::exit(1);
}
