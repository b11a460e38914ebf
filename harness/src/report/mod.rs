//! Reporters: each turns the runner's events into one kind of output.

mod file;
pub mod human;
pub mod json;
pub mod junit;
pub mod ktap;
pub mod sample;

pub use file::ReportError;
