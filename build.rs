//! Compresses the page's files (`www/`, but not `vendor/`) into the build, zlib at the highest
//! level: the binary carries a third of their size, and serves them to browsers as they are
//! (`Content-Encoding: deflate`). See `src/page/embedded.rs`.

use flate2::Compression;
use flate2::write::ZlibEncoder;
use std::io::Write;
use std::path::PathBuf;

fn main() {
    let www = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("www");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo::rerun-if-changed=www");
    let mut names: Vec<String> = std::fs::read_dir(&www)
        .expect("www/ is in the checkout")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut table = format!("const FILES: [(&str, &[u8]); {}] = [\n", names.len());
    for name in &names {
        println!("cargo::rerun-if-changed=www/{name}");
        let bytes = std::fs::read(www.join(name)).expect("a page file is readable");
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(&bytes).expect("compressing into memory");
        let compressed = encoder.finish().expect("compressing into memory");
        std::fs::write(out.join(format!("{name}.z")), compressed).expect("OUT_DIR is writable");
        table += &format!(
            "    (\"/{name}\", include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}.z\"))),\n"
        );
    }
    table += "];\n";
    std::fs::write(out.join("page_files.rs"), table).expect("OUT_DIR is writable");
}
