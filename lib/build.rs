//! `paths::SDME_IMPORT` is `$SDME_BINDIR/sdme-import` (default `/usr/bin`),
//! fixed at build time like the helpers' `SDME_LIBEXECDIR`.

fn main() {
    println!("cargo:rerun-if-env-changed=SDME_BINDIR");
    let dir = std::env::var("SDME_BINDIR")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/usr/bin".into());
    println!(
        "cargo:rustc-env=SDME_IMPORT_PATH={}/sdme-import",
        dir.trim_end_matches('/')
    );
}
