//! Compresses the page's files (`www/`, but not `vendor/`) into the build, zlib at the highest
//! level, the scripts without their comment lines and indentation (they are for the reader of
//! `www/`): the binary carries a fifth of their size, and serves them to browsers as they are
//! (`Content-Encoding: deflate`). See `src/page/embedded.rs`.
//!
//! Also links the binaries with packed relative relocations where the C library loads them
//! (`relative_relocations`).

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
        let mut bytes = std::fs::read(www.join(name)).expect("a page file is readable");
        if name.ends_with(".js") {
            bytes = slim(&bytes);
        }
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
    relative_relocations();
}

/// A position-independent binary (kept for address randomisation) lists each pointer the
/// loader must adjust: 24 bytes apiece, 30 KB of wsecho's 1 MiB. Packed (`DT_RELR`: one word
/// per run of adjacent pointers) they take under 1 KB. Only glibc 2.36 and later load them,
/// so only a native build against such a glibc asks for it; any other keeps the plain list.
fn relative_relocations() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
        || var("HOST") != var("TARGET")
    {
        return;
    }
    let Ok(out) = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
    else {
        return;
    };
    // "glibc 2.36"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut numbers = text.trim().trim_start_matches("glibc ").split('.');
    let mut next = || numbers.next().and_then(|n| n.parse::<u32>().ok());
    if let (Some(major), Some(minor)) = (next(), next())
        && (major, minor) >= (2, 36)
    {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// A script without its comment lines (`//` first on the line) and indentation. Only whole
/// lines go: a `//` inside a line (a URL in a string) is left alone.
fn slim(script: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(script);
    let mut out = String::with_capacity(text.len());
    for line in text.lines().map(str::trim) {
        if !line.is_empty() && !line.starts_with("//") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.into_bytes()
}
