//! The default page, compiled into the binary, so that `wsecho` serves it from any folder.
//! `--www DIR` serves a folder instead (the Flash fallback's files, fetched by `make assets`,
//! are only ever in a folder: they are never part of the source, so never built in).
//!
//! The files are kept zlib-compressed (by `build.rs`): a browser, which always accepts
//! `deflate`, gets them as they are; any other client gets them inflated.

use flate2::{Decompress, FlushDecompress, Status};

// Every file of `www/` but `vendor/`, by URL path, compressed: `FILES`.
include!(concat!(env!("OUT_DIR"), "/page_files.rs"));

/// The built-in file a URL path names (`/` is `/index.html`): its name, and its bytes
/// zlib-compressed.
pub fn find(url_path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = if url_path == "/" {
        "/index.html"
    } else {
        url_path
    };
    FILES
        .iter()
        .find(|(name, _)| *name == path)
        .map(|&(name, bytes)| (name, bytes))
}

/// A built-in file's bytes as they were on disk.
pub fn inflate(compressed: &[u8]) -> Vec<u8> {
    let mut inflater = Decompress::new(true);
    let mut out = Vec::with_capacity(compressed.len() * 4);
    loop {
        let before = inflater.total_out();
        let status = inflater.decompress_vec(
            &compressed[inflater.total_in() as usize..],
            &mut out,
            FlushDecompress::Finish,
        );
        match status {
            // Built by build.rs: it inflates whole, or the build is broken.
            Ok(Status::StreamEnd) | Err(_) => return out,
            Ok(_) if inflater.total_out() == before && out.len() < out.capacity() => return out,
            Ok(_) => out.reserve(out.capacity().max(4096)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_file_is_built_in_as_it_is_on_disk() {
        let www = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("www");
        let mut on_disk = 0;
        for entry in std::fs::read_dir(&www).unwrap() {
            let entry = entry.unwrap();
            if !entry.file_type().unwrap().is_file() {
                continue; // vendor/: fetched, never built in
            }
            let name = format!("/{}", entry.file_name().to_string_lossy());
            let (_, bytes) = find(&name).unwrap_or_else(|| panic!("{name} is not built in"));
            let on_disk_bytes = std::fs::read(entry.path()).unwrap();
            assert_eq!(inflate(bytes), on_disk_bytes, "{name}");
            assert!(
                bytes.len() < on_disk_bytes.len(),
                "{name} is stored compressed"
            );
            on_disk += 1;
        }
        assert_eq!(on_disk, FILES.len());
        assert_eq!(find("/").map(|(name, _)| name), Some("/index.html"));
        assert!(find("/vendor/web_socket.js").is_none());
    }
}
