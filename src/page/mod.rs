//! The page port: an HTTP/1.1 server for the browser page (the files embedded in the binary or
//! a folder), `/config.json`, `/metrics` and `/healthz`, the publish API (`POST
//! /publish/NAME`), and the HTTP carrier of sessions (`/session/`).

pub(crate) mod carrier;
pub(crate) mod embedded;
pub(crate) mod publish;
pub(crate) mod server;
