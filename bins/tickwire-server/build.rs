//! Packs the repository's demo data (`data/demo`) into the binary, so that
//! an installed server (`cargo install --path bins/tickwire-server`) serves
//! the demo from any directory: it unpacks the archive when it finds no
//! `data/demo` of its own. Outside the repository (no `data/demo` beside
//! the crate) the archive is empty and nothing is carried.

use std::path::{Path, PathBuf};

fn main() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/demo");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("demo.tar.zst");
    println!("cargo:rerun-if-changed={}", demo.display());
    let packed = if demo.is_dir() {
        pack(&demo).expect("packing data/demo")
    } else {
        Vec::new()
    };
    std::fs::write(&out, packed).expect("writing the packed demo data");
}

/// `dir` as a zstd-compressed tar archive whose paths are relative to it.
fn pack(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(zstd::Encoder::new(Vec::new(), 3)?);
    archive.mode(tar::HeaderMode::Deterministic);
    archive.follow_symlinks(false);
    archive.append_dir_all(".", dir)?;
    archive.into_inner()?.finish()
}
