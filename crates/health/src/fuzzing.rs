//! Entry points for `starling-bench fuzz`, which feeds hostile bytes to
//! every decoder that takes them from the network: here the overlay
//! intake's reading of a probe's report, through the very functions
//! `POST /v1/overlay/report` runs, so the fuzzer exercises the agent's own
//! code rather than a copy of it. Not an API: hidden from the docs, and
//! free to change with the intake.

pub use crate::overlay::intake::ReportReader;
