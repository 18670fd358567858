//! The default page, compiled into the binary, so that `wsecho` serves it from any folder.
//! `--www DIR` serves a folder instead (the Flash fallback's files, fetched by `make assets`,
//! are only ever in a folder: they are never part of the source, so never built in).

/// Every file of `www/` but `vendor/`, by URL path.
const FILES: [(&str, &[u8]); 9] = [
    ("/index.html", include_bytes!("../../www/index.html")),
    ("/app.js", include_bytes!("../../www/app.js")),
    ("/chat.html", include_bytes!("../../www/chat.html")),
    ("/chat.js", include_bytes!("../../www/chat.js")),
    ("/room.html", include_bytes!("../../www/room.html")),
    ("/room.js", include_bytes!("../../www/room.js")),
    ("/transport.js", include_bytes!("../../www/transport.js")),
    ("/style.css", include_bytes!("../../www/style.css")),
    ("/favicon.svg", include_bytes!("../../www/favicon.svg")),
];

/// The built-in file a URL path names (`/` is `/index.html`), and its name.
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
            assert_eq!(bytes, std::fs::read(entry.path()).unwrap(), "{name}");
            on_disk += 1;
        }
        assert_eq!(on_disk, FILES.len());
        assert_eq!(find("/").map(|(name, _)| name), Some("/index.html"));
        assert!(find("/vendor/web_socket.js").is_none());
    }
}
