//! Reporters: each turns the runner's events into one kind of output.

pub mod human;
