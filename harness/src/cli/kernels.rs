//! `modvm kernels`: the profiles, what the cache holds for each, and
//! freeing the cache.

use super::prepare::fetch_kit;
use super::{matrix, print_line, say, ArchiveArgs, KitArgs};
use crate::kernel::profile;
use crate::kernel::record;
use crate::kernel::{self, CacheState};
use crate::paths;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub struct KernelsArgs {
    #[command(subcommand)]
    pub action: Option<KernelsAction>,
    /// Cache directory [default: $MODVM_CACHE, else $XDG_CACHE_HOME/modvm, else ~/.cache/modvm]
    #[arg(long, global = true)]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub archive: ArchiveArgs,
}

#[derive(Subcommand, Debug, Clone)]
pub enum KernelsAction {
    /// List the built-in profiles: source, version once cached, size (the default).
    List,
    /// Fetch (or build) these profiles ahead of time, e.g. for a CI cache.
    Fetch {
        /// Profile names or recipe files.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Same as `fetch`; reads better for profiles built from source.
    Build {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print a cache key for CI made of what these profiles' kits would
    /// hold if fetched now (package versions; one apt update, no
    /// download): a new kernel upload changes it.
    Key {
        /// Kernel profiles, comma-separated: built-in names or recipe files.
        #[arg(long, default_value = profile::DEFAULT_PROFILE)]
        kernel: String,
    },
    /// Remove kits the cache no longer uses (older versions, interrupted
    /// installs) and every saved guest (each is saved again, in a few
    /// seconds, by the next run that needs it); with --all, also every kit
    /// and the private apt state.
    Prune {
        #[arg(long)]
        all: bool,
    },
}

pub fn run(args: &KernelsArgs) -> Result<bool> {
    let cache = paths::cache_dir(args.cache.clone());
    match args.action.clone().unwrap_or(KernelsAction::List) {
        KernelsAction::List => list(&cache),
        KernelsAction::Fetch { names } | KernelsAction::Build { names } => {
            let kit_args = KitArgs {
                kernel: names.join(","),
                cache: args.cache.clone(),
                refresh: false,
                archive: args.archive.clone(),
            };
            for p in matrix::profiles(&kit_args.kernel, &mut say)? {
                let kit = fetch_kit(&kit_args, &p)?;
                print_line(&format!(
                    "{}: {} ({}) ready",
                    p.name, kit.release, kit.version
                ))?;
            }
            Ok(true)
        }
        KernelsAction::Key { kernel } => {
            let sources = args.archive.sources();
            let mut lines = Vec::new();
            for p in matrix::profiles(&kernel, &mut say)? {
                let line = kernel::resolve::resolve(&cache, &p, &sources, &mut say)
                    .with_context(|| format!("cannot resolve the kernel `{}`", p.name))?;
                say(&line);
                lines.push(line);
            }
            print_line(&kernel::resolve::key(&lines))?;
            Ok(true)
        }
        KernelsAction::Prune { all } => prune(&cache, all),
    }
}

fn list(cache: &Path) -> Result<bool> {
    print_line(&format!(
        "{:<20} {:<8} {:<48} {:>9}",
        "PROFILE", "SOURCE", "CACHED", "SIZE"
    ))?;
    for name in profile::builtin_names() {
        let p = profile::load(name)?;
        let (state, size) = if kernel::is_cached_kind(&p) {
            let dir = record::profile_dir(cache, &p.name);
            let size = dir_size(&dir);
            let state = match kernel::inspect(cache, &p) {
                CacheState::Ready(k) | CacheState::Unverified(k) => {
                    format!("{} ({})", k.release, k.version)
                }
                CacheState::Damaged(_) => "damaged: `modvm kernels fetch` repairs".into(),
                CacheState::Missing => "no".into(),
            };
            (state, human_size(size))
        } else {
            let state = match (&p.source, kernel::host::problem()) {
                (kernel::Source::Host, Some(_)) => {
                    "unusable here (see `modvm doctor --kernel host`)".into()
                }
                _ => "used in place".into(),
            };
            (state, "-".into())
        };
        print_line(&format!(
            "{:<20} {:<8} {:<48} {:>9}",
            p.name,
            p.source.kind(),
            state,
            size
        ))?;
    }
    Ok(true)
}

fn prune(cache: &Path, all: bool) -> Result<bool> {
    let mut freed = 0;
    // Both are made again from the kits on the next run that needs them.
    for made in [cache.join("snapshots"), cache.join("guest-modules")] {
        freed += dir_size(&made);
        remove(&made)?;
    }
    let kernels = cache.join("kernels");
    if all {
        for d in [kernels.clone(), cache.join("busybox")]
            .into_iter()
            .chain(apt_dirs(cache))
        {
            freed += dir_size(&d);
            remove(&d)?;
        }
    } else if let Ok(profiles) = std::fs::read_dir(&kernels) {
        for entry in profiles.flatten().filter(|e| e.path().is_dir()) {
            let dir = entry.path();
            let current: Option<String> = std::fs::read(dir.join("current.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<record::Current>(&b).ok())
                .map(|c| c.kit);
            for kit in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = kit.file_name().to_string_lossy().into_owned();
                if kit.path().is_dir() && Some(&name) != current.as_ref() {
                    freed += dir_size(&kit.path());
                    remove(&kit.path())?;
                }
            }
        }
    }
    say(&format!(
        "freed {} in {}",
        human_size(freed),
        cache.display()
    ));
    Ok(true)
}

fn apt_dirs(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("apt"))
        })
        .collect()
}

fn remove(path: &Path) -> Result<()> {
    let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    let removed = if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| dir_size(&e.path()))
        .sum()
}

fn human_size(bytes: u64) -> String {
    match bytes {
        0 => "-".into(),
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
    }
}
