//! From specs to runnable tests: select by filter, build each module
//! directory once, write one initramfs per directory, and make the smoke test
//! of a directory without a spec.

use crate::helpers::{self, HelperError};
use crate::initramfs::{self, InitramfsSpec};
use crate::kbuild::{self, BuildError};
use crate::kernel::guest_modules::{self, GuestModules};
use crate::kernel::Kit;
use crate::lock::Lock;
use crate::runner::{dir_name, stable_hash, PlannedTest};
use crate::shipped::GuestFile;
use crate::spec::{self, Action, FileSpec, LoadedSpec, Origin, SpecError, Step, TestSpec};
use std::path::{Path, PathBuf};

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot build the module in {dir}: {source}")]
    Build {
        dir: PathBuf,
        #[source]
        source: BuildError,
    },
    #[error("cannot build helper `{name}` of {dir}: {source}")]
    Helper {
        dir: PathBuf,
        name: String,
        #[source]
        source: HelperError,
    },
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The files of each spec's `guest_packages`, by [`package_key`].
pub type GuestPackageFiles = std::collections::BTreeMap<Vec<String>, Vec<GuestFile>>;

/// A spec's `guest_packages` as a key: sorted, each once.
pub fn package_key(names: &[String]) -> Vec<String> {
    let mut key = names.to_vec();
    key.sort();
    key.dedup();
    key
}

/// `suite/name` of a test.
pub fn full_name(loaded: &LoadedSpec, test: &TestSpec) -> String {
    format!("{}/{}", loaded.suite, test.name)
}

/// Whether `name` (`suite/name`) is selected: it contains any of the
/// filters (`--filter` may be repeated), or there are none.
pub fn matches(name: &str, filters: &[String]) -> bool {
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// The tests of `loaded` that `filter` selects; a smoke directory yields its
/// (not yet built) smoke test's name only.
pub fn selected(loaded: &LoadedSpec, filter: &[String]) -> Vec<String> {
    let names: Vec<String> = if loaded.smoke {
        vec![format!("{}/smoke", loaded.suite)]
    } else {
        loaded
            .spec
            .tests
            .iter()
            .map(|t| full_name(loaded, t))
            .collect()
    };
    names.into_iter().filter(|n| matches(n, filter)).collect()
}

/// The build directory's name for a module directory: its name (to read)
/// and a hash of its canonical path (so two directories that share a name
/// or a suite never share a build, and `.ko` files of one never reach the
/// other's guest).
pub fn build_key(dir: &Path) -> String {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let readable = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    let readable: String = dir_name(&readable).chars().take(40).collect();
    let hash = stable_hash(canonical.as_os_str().as_encoded_bytes());
    format!("{readable}-{hash:016x}")
}

/// The tests ready to run on one kernel, and those whose module did not
/// build for it.
#[derive(Debug, Default)]
pub struct Plan {
    pub tests: Vec<PlannedTest>,
    pub unbuilt: Vec<Unbuilt>,
    /// Tests whose DKMS tree rules this kernel out (`BUILD_EXCLUSIVE_*`).
    pub excluded: Vec<Excluded>,
}

/// The selected tests of a DKMS tree that is not built for this kernel,
/// and why: they are skipped, as DKMS skips them.
#[derive(Debug)]
pub struct Excluded {
    pub names: Vec<String>,
    pub reason: String,
}

/// The selected tests of a module directory that did not build.
#[derive(Debug)]
pub struct Unbuilt {
    pub names: Vec<String>,
    pub error: PlanError,
}

/// Builds what the selected tests need and returns them in spec order.
/// A module that does not compile for this kernel is listed in
/// [`Plan::unbuilt`] (a result of the run, as a failed test is) and the
/// other directories are still built. `make` holds the user's make
/// variables for every module build (`--kbuild-arg`); `extra_files` go
/// into every guest (modvm's fault-injection helper).
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    specs: &[LoadedSpec],
    filter: &[String],
    kit: &Kit,
    make: &[String],
    build_root: &Path,
    guest_modules: Option<&GuestModules>,
    guest_packages: &GuestPackageFiles,
    extra_files: &[GuestFile],
    build_log: &mut dyn FnMut(&str),
) -> Result<Plan, PlanError> {
    let mut plan = Plan::default();
    let planned = &mut plan.tests;
    for loaded in specs {
        if selected(loaded, filter).is_empty() {
            continue;
        }
        let key = build_key(&loaded.dir);
        let build_dir = build_root.join(&key);
        // Two runs of the same module (two terminals, parallel CI jobs) take
        // turns at its build directory.
        std::fs::create_dir_all(build_root).map_err(|source| PlanError::Io {
            path: build_root.to_path_buf(),
            source,
        })?;
        let lock_path = build_root.join(format!("{key}.lock"));
        let _lock = Lock::exclusive(&lock_path, &mut || {}).map_err(|source| PlanError::Io {
            path: lock_path.clone(),
            source,
        })?;
        let target = kbuild::Target {
            headers: &kit.headers,
            identity: &kit.identity,
            release: &kit.release,
        };
        let built = kbuild::build(&loaded.dir, &target, make, &build_dir)
            .map_err(|source| PlanError::Build {
                dir: loaded.dir.clone(),
                source,
            })
            .and_then(|built| {
                // Beside make's products, in a directory the source mirror
                // leaves alone.
                let out = build_dir.join(".modvm-helpers");
                helpers::build(&loaded.dir, &loaded.spec.helpers, &out)
                    .map(|h| (built, h))
                    .map_err(|(name, source)| PlanError::Helper {
                        dir: loaded.dir.clone(),
                        name,
                        source,
                    })
            });
        let (built, helpers) = match built {
            Ok(b) => b,
            Err(PlanError::Build {
                source: BuildError::Excluded { conf, reason },
                ..
            }) => {
                plan.excluded.push(Excluded {
                    names: selected(loaded, filter),
                    reason: format!("{reason} ({})", conf.display()),
                });
                continue;
            }
            // Suites that cannot link without KUnit: nothing to test here,
            // as a DKMS exclusion has nothing.
            Err(PlanError::Build { .. })
                if !kunit_in(kit) && kbuild::objects_have_kunit_suites(&build_dir) =>
            {
                plan.excluded.push(Excluded {
                    names: selected(loaded, filter),
                    reason: no_kunit(kit),
                });
                continue;
            }
            Err(error) => {
                plan.unbuilt.push(Unbuilt {
                    names: selected(loaded, filter),
                    error,
                });
                continue;
            }
        };
        build_log(&built.log);
        let kunit_suites = built.modules.iter().any(|m| kbuild::has_kunit_suites(m));
        if kunit_suites && !kunit_in(kit) {
            plan.excluded.push(Excluded {
                names: selected(loaded, filter),
                reason: no_kunit(kit),
            });
            continue;
        }
        let tests: Vec<TestSpec> = if loaded.smoke {
            vec![spec::smoke_test(&kbuild::load_order(&built.modules))]
        } else {
            check_modules_exist(loaded, &built.modules)?;
            loaded
                .spec
                .tests
                .iter()
                .filter(|t| matches(&full_name(loaded, t), filter))
                .cloned()
                .collect()
        };
        // The kernel's own modules that the built ones need, loaded before
        // the test; the `P` taint a module that is not GPL brings.
        let kernel_deps = match guest_modules {
            Some(disk) => {
                let own = kbuild::module_names(&built.modules);
                let depends: Vec<Vec<String>> = built
                    .modules
                    .iter()
                    .map(|m| kbuild::depends_of(m))
                    .collect();
                guest_modules::in_tree_dependencies(&depends, &own, disk)
            }
            None => Vec::new(),
        };
        let mut allowed_taint = if built.modules.iter().any(|m| kbuild::is_proprietary(m)) {
            crate::crash::TAINT_PROPRIETARY
        } else {
            0
        };
        if kunit_suites {
            // KUnit marks the kernel as having run tests (`N`).
            allowed_taint |= crate::crash::TAINT_TEST;
        }
        let package_files = guest_packages
            .get(&package_key(&loaded.spec.guest_packages))
            .cloned()
            .unwrap_or_default();
        // Modules, helpers and the spec file's files: every test's guest.
        let mut common: Vec<GuestFile> =
            built.modules.iter().map(|m| GuestFile::module(m)).collect();
        for (name, binary) in &helpers {
            common.push(GuestFile::plain(
                binary,
                format!("{}/{name}", spec::MODULES_DIR),
                Some(true),
            ));
        }
        common.extend(shipped(loaded, &loaded.spec.files));
        common.extend(extra_files.iter().cloned());
        // One initramfs per set of files: tests that ship files of their
        // own get one each.
        let mut written: Vec<(Vec<GuestFile>, PathBuf)> = Vec::new();
        for spec in tests {
            if guest_modules.is_none() {
                if let Some(reason) = needs_module_tree(&spec, kit) {
                    plan.excluded.push(Excluded {
                        names: vec![full_name(loaded, &spec)],
                        reason,
                    });
                    continue;
                }
            }
            let mut files = common.clone();
            files.extend(shipped(loaded, &spec.files));
            check_collisions(loaded, &spec, &files)?;
            let initrd = match written.iter().find(|(f, _)| *f == files) {
                Some((_, initrd)) => initrd.clone(),
                None => {
                    let initrd = if spec.files.is_empty() {
                        build_root.join(format!("{key}.cpio"))
                    } else {
                        let set: Vec<&str> = files.iter().map(|f| f.guest.as_str()).collect();
                        let hash = stable_hash(set.join("\n").as_bytes());
                        build_root.join(format!("{key}-{hash:016x}.cpio"))
                    };
                    let mut all = guest_modules.map(|m| m.boot.clone()).unwrap_or_default();
                    all.extend(package_files.iter().cloned());
                    all.extend(files.iter().cloned());
                    initramfs::write(
                        &InitramfsSpec {
                            busybox: kit.busybox.clone(),
                            init: initramfs::INIT.to_string(),
                            files: all,
                        },
                        &initrd,
                    )
                    .map_err(|source| PlanError::Io {
                        path: initrd.clone(),
                        source,
                    })?;
                    written.push((files.clone(), initrd.clone()));
                    initrd
                }
            };
            let mut spec = spec;
            if !kernel_deps.is_empty() {
                let load = Step {
                    origin: Origin::Dependencies,
                    ..Step::action(Action::Run(format!(
                        "modprobe -a {}",
                        kernel_deps.join(" ")
                    )))
                };
                spec.steps.insert(0, load);
            }
            planned.push(PlannedTest {
                suite: loaded.suite.clone(),
                spec,
                initrd,
                modules: built.modules.clone(),
                files,
                base_files: package_files.clone(),
                kernel_deps: kernel_deps.clone(),
                allowed_taint,
            });
        }
    }
    Ok(plan)
}

/// Why a test cannot run on a kernel without a module tree of its own
/// (the debug kernel: its drivers are built in or absent): a `modprobe`
/// step there could only fail, so the test is skipped with this reason.
fn needs_module_tree(test: &TestSpec, kit: &Kit) -> Option<String> {
    let name = test.steps.iter().find_map(|s| match &s.action {
        Action::Modprobe(m) => Some(&m.name),
        _ => None,
    })?;
    Some(format!(
        "`modprobe {name}` needs the kernel's own modules, and {} ({}) has no module tree; run it on a Debian kernel (`--kernel debian-6.1-cloud`)",
        kit.profile, kit.release
    ))
}

/// Whether the kernel can run a module's KUnit suites: KUnit built in or
/// as a module (the test's `modprobe` of its dependencies loads it).
fn kunit_in(kit: &Kit) -> bool {
    kit.builds_option("CONFIG_KUNIT")
}

/// Why a module with KUnit suites is skipped on `kit`.
fn no_kunit(kit: &Kit) -> String {
    format!(
        "the module has KUnit suites (a `{}` section) and {} ({}) has no KUnit (CONFIG_KUNIT is not set); run it on the `debug` kernel (`--kernel debug`) or on a local kernel built with CONFIG_KUNIT",
        kbuild::elf::KUNIT_SUITES,
        kit.profile,
        kit.release
    )
}

/// The spec's `files` as the guest gets them (paths relative to the spec).
fn shipped<'a>(
    loaded: &'a LoadedSpec,
    files: &'a [FileSpec],
) -> impl Iterator<Item = GuestFile> + 'a {
    files
        .iter()
        .map(|f| GuestFile::plain(&loaded.dir.join(&f.src), f.guest_path(), None))
}

/// A file the spec ships may not land where a module or a helper does.
fn check_collisions(
    loaded: &LoadedSpec,
    test: &TestSpec,
    files: &[GuestFile],
) -> Result<(), PlanError> {
    for (i, f) in files.iter().enumerate() {
        if !files[..i].iter().any(|g| g.guest == f.guest) {
            continue;
        }
        let named = loaded
            .spec
            .files
            .iter()
            .chain(&test.files)
            .find(|s| s.guest_path() == f.guest);
        let message = format!(
            "test {:?} ships a file to {}, where a module or helper of {} goes already; give it another `dest`",
            test.name,
            f.guest,
            loaded.dir.display()
        );
        return Err(match named {
            Some(s) => SpecError::at_value(
                &loaded.path,
                &loaded.text,
                s.dest.as_deref().unwrap_or(&s.src),
                0,
                message,
            ),
            None => SpecError::Semantic {
                path: loaded.path.clone(),
                message,
            },
        }
        .into());
    }
    Ok(())
}

fn check_modules_exist(loaded: &LoadedSpec, built: &[PathBuf]) -> Result<(), PlanError> {
    let names: Vec<String> = built
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    for t in &loaded.spec.tests {
        for s in &t.steps {
            if let Action::Insmod(m) = &s.action {
                if !names.contains(&m.name) {
                    let message = format!(
                        "test {:?} loads module `{}`, but building {} produced only: {}; check the name or the Kbuild's obj-m",
                        t.name,
                        m.name,
                        loaded.dir.display(),
                        names.join(", ")
                    );
                    return Err(SpecError::at_value(
                        &loaded.path,
                        &loaded.text,
                        &m.name,
                        0,
                        message,
                    )
                    .into());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
