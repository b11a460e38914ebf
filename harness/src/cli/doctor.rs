//! `modvm doctor`: the host's prerequisites, KVM and the kernel cache.

use super::matrix;
use super::{print_line, say, KitArgs};
use crate::{accel, kernel, paths, prereq};
use anyhow::{bail, Result};

/// `println!` that ends quietly on a closed stdout (see [`print_line`]).
macro_rules! out {
    ($($t:tt)*) => {{
        print_line(&format!($($t)*))?;
    }};
}

pub fn doctor(args: &KitArgs) -> Result<bool> {
    let profiles = matrix::profiles(&args.kernel, &mut say)?;
    let tools = matrix::tools(&profiles);
    let mut ok = true;
    for t in &tools {
        match prereq::find(&t.program) {
            Some(p) => out!("ok       {:<20} {}", t.program, p.display()),
            None => {
                ok = false;
                out!(
                    "MISSING  {:<20} {}: install with `sudo apt-get install {}`",
                    t.program,
                    t.why,
                    t.package
                );
            }
        }
    }
    let cache = paths::cache_dir(args.cache.clone());
    // apt fetches what the cache lacks; without it, cached kits still work.
    match crate::apt::check_tools() {
        Ok(()) => {
            for program in matrix::APT_TOOLS {
                if let Some(p) = prereq::find(program) {
                    out!("ok       {:<20} {}", program, p.display());
                }
            }
        }
        Err(e) => {
            let needed = profiles
                .iter()
                .any(|p| kernel::is_cached_kind(p) && kernel::cached(&cache, p).is_none());
            if needed {
                ok = false;
                out!("MISSING  {:<20} {e}", "apt-get");
            } else {
                out!("note     {:<20} {e}", "apt-get");
            }
        }
    }
    // Only specs with C `helpers` need it: a note, not a failure.
    if crate::helpers::has_static_libc() {
        out!(
            "ok       {:<20} static C library, for specs' C helpers",
            "libc.a"
        );
    } else {
        out!(
            "note     {:<20} missing: specs with C `helpers` need it; install with `sudo apt-get install libc6-dev`",
            "libc.a"
        );
    }
    let mut kit_damaged = false;
    for profile in &profiles {
        if !kernel::is_cached_kind(profile) {
            match (&profile.source, kernel::host::problem()) {
                (kernel::Source::Host, Some(why)) => {
                    out!("MISSING  {:<20} {why}", profile.name);
                    ok = false;
                }
                _ => out!(
                    "note     {:<20} a {} kernel: checked when a run uses it",
                    profile.name,
                    profile.source.kind()
                ),
            }
            continue;
        }
        match kernel::inspect(&cache, profile) {
        kernel::CacheState::Ready(kit) => {
            out!("ok       {:<20} {} ({}) in {}", "kernel", kit.release, kit.version, kit.dir.display());
            ok &= kit_tools_present(&kit)?;
        }
        kernel::CacheState::Unverified(kit) => out!(
            "ok       {:<20} {} ({}) in {} (made by an older modvm; checked and given a manifest on the next `modvm test` or `modvm fetch`)",
            "kernel", kit.release, kit.version, kit.dir.display()
        ),
        kernel::CacheState::Damaged(damage) => {
            out!(
                "DAMAGED  {:<20} {damage}; `modvm fetch` fetches it again",
                "kernel"
            );
            kit_damaged = true;
        }
        kernel::CacheState::Missing => out!(
            "note     {:<20} `{}` not cached yet in {}; `modvm fetch` or the first `modvm test` downloads it",
            "kernel",
            profile.name,
            cache.display()
        ),
        }
    }
    kvm(&cache)?;
    if !ok {
        if prereq::can_self_install() {
            out!("(running as root on Debian: `modvm test` installs missing tools itself)");
        }
        bail!("some host prerequisites are missing (see above)");
    }
    if kit_damaged {
        bail!("the cached kernel kit is damaged (see above)");
    }
    Ok(true)
}

/// `/dev/kvm`, and the probe's cached verdict when there is one for this
/// host (default QEMU, a cached kernel): an openable device proves nothing.
fn kvm(cache: &std::path::Path) -> Result<()> {
    if let Some(p) = accel::kvm_device_problem() {
        out!(
            "note     {:<20} {p}: guests run under TCG (slower, works)",
            "/dev/kvm"
        );
        return Ok(());
    }
    let file = cache.join("accel.json");
    let qemu = std::path::Path::new(crate::machine::Arch::DEFAULT.qemu_binary());
    let verdict = accel::cached(&file, &accel::host_key(qemu));
    match verdict {
        Some(v) if v.kvm_works => out!(
            "ok       {:<20} KVM passed its probe on this host; runs use it",
            "/dev/kvm"
        ),
        Some(v) => out!(
            "note     {:<20} KVM failed its probe on this host earlier: {}; runs use TCG (delete {} to probe again)",
            "/dev/kvm",
            v.reason,
            file.display()
        ),
        None => out!(
            "ok       {:<20} openable; `--accel auto` probes it before use",
            "/dev/kvm"
        ),
    }
    Ok(())
}

/// The tools the kit's headers run for every module (`pahole` for BTF, the
/// compiler they name): false when one is missing.
fn kit_tools_present(kit: &kernel::Kit) -> Result<bool> {
    let mut ok = true;
    for t in super::prepare::kit_tools(kit) {
        match prereq::find(&t.program) {
            Some(p) => out!(
                "ok       {:<20} {} (for {})",
                t.program,
                p.display(),
                kit.profile
            ),
            None => {
                ok = false;
                out!(
                    "MISSING  {:<20} {} of `{}`: install with `sudo apt-get install {}`",
                    t.program,
                    t.why,
                    kit.profile,
                    t.package
                );
            }
        }
    }
    Ok(ok)
}
