//! The page port: an HTTP/1.1 server for the browser page (the files embedded in the binary or
//! a folder), `/config.json`, `/metrics` and `/healthz`, and the publish API (`POST
//! /publish/NAME`).

pub(crate) mod embedded;
pub(crate) mod publish;
pub(crate) mod server;
