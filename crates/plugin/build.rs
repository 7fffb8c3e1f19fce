//! Turns include/lock_driver.h (libvirt's lock-driver ABI) into Rust types.
fn main() {
    let header = "../../include/lock_driver.h";
    println!("cargo:rerun-if-changed={header}");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("lock_driver.rs");
    bindgen::Builder::default()
        .header(header)
        .allowlist_type("vir.*")
        .allowlist_var("VIR_.*")
        .prepend_enum_name(false)
        .layout_tests(true)
        .generate()
        .expect("bindgen could not parse include/lock_driver.h (is libclang-dev installed? run scripts/setup.sh)")
        .write_to_file(out)
        .expect("write bindings");
}
