//! Reporters: each turns the runner's events into one kind of output.

mod file;
pub mod human;
pub mod json;
pub mod junit;
pub mod ktap;
pub mod markdown;
/// A realistic run for the reporters' tests (public for integration tests).
#[doc(hidden)]
pub mod sample;

pub use file::{is_stdout, ReportError};
