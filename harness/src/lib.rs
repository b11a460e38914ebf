//! modvm: test Linux kernel modules inside throw-away QEMU guests.
//!
//! Data flows one way: `spec` (what to test) and `profile`/`kernel` (what to
//! boot) feed `kbuild` and `initramfs`; `runner` boots a `guest` per test
//! (`qemu` command line, `console` for the shell, `klog` for the kernel log)
//! and emits `outcome` events that `report`ers turn into output.

pub mod accel;
pub mod apt;
pub mod capture;
pub mod children;
pub mod cli;
pub mod console;
pub mod crash;
pub mod errno;
pub mod faults;
pub mod guest;
pub mod helpers;
pub mod initramfs;
pub mod kbuild;
pub mod kernel;
pub mod klog;
pub(crate) mod kunit;
pub mod lock;
pub mod logsink;
pub mod machine;
pub mod outcome;
pub mod partition;
pub mod paths;
pub mod placement;
pub mod plan;
pub mod prereq;
pub mod qemu;
pub mod report;
#[doc(hidden)]
pub mod rng;
pub mod runner;
pub mod shipped;
pub mod sockdir;
pub mod spec;
pub mod symbolize;
pub mod trace;
