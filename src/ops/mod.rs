//! Operations: what the server is told and what it keeps account of. The configuration, the
//! memory budget and memory given back after a load, the metrics, the shutdown signal, and
//! escaping for what goes into logs and pages. Everything else may use these; they use nothing
//! above them.

pub(crate) mod budget;
pub(crate) mod config;
pub(crate) mod escape;
pub(crate) mod give_back;
pub(crate) mod metrics;
pub(crate) mod shutdown;
