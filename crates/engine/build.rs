//! Turns libblkid's header into Rust declarations for src/probe.rs, which
//! asks libblkid what a device holds before `lockspace init` overwrites it.
fn main() {
    let header = "/usr/include/blkid/blkid.h";
    println!("cargo:rerun-if-changed={header}");
    println!("cargo:rustc-link-lib=blkid");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("blkid.rs");
    bindgen::Builder::default()
        .header(header)
        .allowlist_function("blkid_(new_probe_from_filename|free_probe|probe_enable_superblocks|probe_set_superblocks_flags|probe_enable_partitions|do_safeprobe|probe_lookup_value)")
        .allowlist_var("BLKID_SUBLKS_(LABEL|UUID|TYPE|USAGE|BADCSUM)")
        .layout_tests(true)
        .generate()
        .expect("bindgen could not parse <blkid/blkid.h> (are libblkid-dev and libclang-dev installed? run scripts/setup.sh)")
        .write_to_file(out)
        .expect("write bindings");
}
