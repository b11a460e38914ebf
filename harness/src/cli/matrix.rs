//! The kernels of a run: `--kernel a,b,c` or `all` into profiles, a spec's
//! `kernels` checked against them, and the results of modules that did not
//! build for one kernel of the matrix.

use crate::kernel::profile::{self, KernelProfile, Source};
use crate::kernel::{host, Kit};
use crate::outcome::{Status, TestResult};
use crate::plan::Plan;
use crate::prereq;
use crate::spec::{LoadedSpec, SpecError};
use anyhow::{bail, Result};
use std::path::PathBuf;

/// The profiles `--kernel` names, in order, each once. `all` stands for
/// every built-in profile that can run here (the host kernel only when its
/// image and build tree are usable; `say` tells why it is left out).
pub fn profiles(arg: &str, say: &mut dyn FnMut(&str)) -> Result<Vec<KernelProfile>> {
    let mut out: Vec<KernelProfile> = Vec::new();
    for item in arg.split(',').map(str::trim) {
        if item.is_empty() {
            bail!("--kernel {arg:?} has an empty entry; give profile names separated by commas");
        }
        let loaded: Vec<KernelProfile> = if item == "all" {
            let mut all = Vec::new();
            for name in profile::builtin_names() {
                let p = profile::load(name)?;
                if p.source == Source::Host {
                    if let Some(why) = host::problem() {
                        say(&format!("--kernel all: leaving out `host`: {why}"));
                        continue;
                    }
                }
                all.push(p);
            }
            all
        } else {
            vec![profile::load(item)?]
        };
        for p in loaded {
            if let Some(other) = out.iter().find(|o| o.name == p.name) {
                if *other != p {
                    bail!(
                        "--kernel names two different profiles called `{}`; rename one recipe",
                        p.name
                    );
                }
                continue;
            }
            out.push(p);
        }
    }
    Ok(out)
}

/// The host tools the profiles need, each once. apt's are left to the
/// fetch, which needs them only when something is not cached yet and says
/// what to do on a host that has none (installing "apt" is not it).
pub fn tools(profiles: &[KernelProfile]) -> Vec<prereq::Tool> {
    let mut tools = Vec::new();
    for p in profiles {
        for t in prereq::required(&p.compiler) {
            if !APT_TOOLS.contains(&t.program.as_str()) && !tools.contains(&t) {
                tools.push(t);
            }
        }
    }
    tools
}

/// The tools only fetching uses.
pub const APT_TOOLS: [&str; 2] = ["apt-get", "dpkg-deb"];

/// A spec's `kernels` may name built-in profiles and those of this run; any
/// other name is a typo that would silently skip the test.
pub fn check_spec_kernels(specs: &[LoadedSpec], run: &[KernelProfile]) -> Result<()> {
    for loaded in specs.iter().filter(|s| !s.smoke) {
        for test in &loaded.spec.tests {
            for name in &test.kernels {
                if !profile::is_known(name, run) {
                    let unknown = profile::unknown(name).to_string();
                    return Err(SpecError::at_value(
                        &loaded.path,
                        &loaded.text,
                        name,
                        0,
                        format!("test {:?}: `kernels`: {unknown}", test.name),
                    )
                    .into());
                }
            }
        }
    }
    Ok(())
}

/// One error result per test whose module did not build for `profile`,
/// carrying the compiler's messages; one skip per test whose DKMS tree
/// rules the kernel out.
pub fn unbuilt_results(plan: &Plan, profile: &KernelProfile, kit: &Kit) -> Vec<TestResult> {
    let mut out = Vec::new();
    for x in &plan.excluded {
        for name in &x.names {
            let mut t = TestResult::not_run(name.clone(), profile.name.clone(), PathBuf::new(), "");
            t.status = Status::Skip;
            t.kernel_release = kit.release.clone();
            t.message = Some(x.reason.clone());
            out.push(t);
        }
    }
    for u in &plan.unbuilt {
        // The build error quotes the compiler's output in its own text.
        let why = u.error.to_string();
        for name in &u.names {
            let mut t = TestResult::not_run(name.clone(), profile.name.clone(), PathBuf::new(), "");
            t.status = Status::Error;
            t.kernel_release = kit.release.clone();
            t.message = Some(format!(
                "the module does not build for {} ({}): {why}",
                profile.name, kit.release
            ));
            out.push(t);
        }
    }
    out
}
