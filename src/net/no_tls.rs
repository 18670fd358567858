//! Built without the `tls` feature: no certificate or session can exist (both types have no
//! values), so every connection is plain and `Config::tls` is refused at start with the way
//! to get TLS.

use crate::net::wire::Wire;
use std::io::{self, IoSlice};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub enum Certificates {}

impl Certificates {
    pub fn load(_cert: &Path, _key: &Path) -> Result<Arc<Certificates>, String> {
        Err(
            "this wsecho was built without TLS: build it with `cargo build --release --locked \
             --features tls` (or `cargo install --path . --locked --features tls`), or let a \
             proxy in front of it speak TLS (deploy/nginx.conf)"
                .to_string(),
        )
    }

    pub fn reload(&self) -> Result<(), String> {
        match *self {}
    }

    pub fn files(&self) -> crate::ops::config::TlsFiles {
        match *self {}
    }

    pub fn session(&self) -> io::Result<Session> {
        match *self {}
    }
}

pub enum Session {}

impl Session {
    pub fn handshake(&self, _: &Wire, _: Instant) -> io::Result<()> {
        match *self {}
    }

    pub fn recv_now(&self, _: &Wire, _: &mut [u8]) -> io::Result<usize> {
        match *self {}
    }

    pub fn send_now(&self, _: &Wire, _: &[IoSlice<'_>]) -> io::Result<usize> {
        match *self {}
    }

    pub fn flush_now(&self, _: &Wire) -> io::Result<bool> {
        match *self {}
    }

    pub fn has_pending_output(&self) -> bool {
        match *self {}
    }

    pub fn read(&self, _: &Wire, _: &mut [u8]) -> io::Result<usize> {
        match *self {}
    }

    pub fn write(&self, _: &Wire, _: &[IoSlice<'_>]) -> io::Result<usize> {
        match *self {}
    }

    pub fn flush(&self, _: &Wire) -> io::Result<()> {
        match *self {}
    }

    pub fn close(&self, _: &Wire, _: Instant) -> io::Result<()> {
        match *self {}
    }
}
