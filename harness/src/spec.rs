//! Test specs: the JSON files module authors write (`modvm.json` beside the
//! module's sources). Parsing is strict: unknown fields, wrong types and bad
//! regexes are errors that name the file, line and column.

use crate::errno::{self, Errno};
use crate::qemu::shell_quote;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod devices;
pub mod faults;
mod files;
pub mod kunit;
pub use devices::DeviceSpec;
pub use faults::FaultsSpec;
pub use files::{FileSpec, HelperSpec, MAX_FILE_BYTES, MODULES_DIR};

/// The file name modvm looks for in a module directory.
pub const SPEC_FILE: &str = "modvm.json";

/// Longest `run` command: it travels base64-encoded (4/3 larger) on one line
/// of the guest's terminal, which holds at most 4095 bytes.
pub const MAX_COMMAND_BYTES: usize = 2048;

/// Default per-step deadline.
pub const DEFAULT_STEP_TIMEOUT_S: f64 = 30.0;

/// One spec file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// Name that prefixes the test names; defaults to the directory's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// Files every test of the file gets in its guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    /// Userspace programs built from C beside the module, in every guest's
    /// `/modules`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub helpers: Vec<HelperSpec>,
    /// Debian packages every test's guest gets (with their libraries):
    /// userspace busybox lacks, such as `iptables` or `ethtool`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guest_packages: Vec<String>,
    pub tests: Vec<TestSpec>,
}

/// One test: a fresh guest, steps run in order (`repeat` times).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RawTest", into = "RawTest")]
pub struct TestSpec {
    pub name: String,
    /// Steps with the `modules` shorthand already expanded.
    pub steps: Vec<Step>,
    /// How many times the steps run in the same guest.
    pub repeat: u32,
    /// Kernel profiles the test runs on; empty means any.
    pub kernels: Vec<String>,
    /// The test must crash with a title containing this text.
    pub expect_crash: Option<String>,
    /// Boot with `panic_on_warn=1`: any WARNING ends the guest.
    pub panic_on_warn: bool,
    /// Boot with `oops=panic`: any oops ends the guest.
    pub panic_on_oops: bool,
    /// Deadline of steps that set none (else the run's default).
    pub step_timeout_s: Option<f64>,
    /// Guest CPUs (else the run's `--smp`): locking bugs need more than one.
    pub smp: Option<u32>,
    /// Files this test gets in its guest besides the spec file's `files`.
    pub files: Vec<FileSpec>,
    /// Hardware the test's guest gets (PCI devices, scratch disks).
    pub devices: Vec<DeviceSpec>,
    /// Fail each allocation of a module's init in turn (`--faults`).
    pub faults: Option<FaultsSpec>,
    /// The KUnit suites and cases that count (`kunit`); empty: all.
    pub kunit: kunit::KunitFilter,
}

/// Most CPUs a spec or `--smp` may ask for: TCG runs them all on the host's
/// cores, and more than a few only slows the guest down.
pub const MAX_SMP: u32 = 16;

/// Names are printed on terminals and in reports: control characters
/// (newlines, NUL, escape sequences) are refused.
fn check_printable(what: &str, name: &str) -> Result<(), String> {
    if name.chars().any(char::is_control) {
        return Err(format!(
            "the {what} {name:?} contains control characters (newline, tab, NUL, escape...); use printable characters"
        ));
    }
    Ok(())
}

/// A deadline given in seconds must be positive and at most a day.
fn check_timeout(field: &str, value: Option<f64>) -> Result<(), String> {
    match value {
        Some(t) if !(t > 0.0 && t <= 86400.0) => Err(format!(
            "`{field}` must be greater than 0 and at most 86400 seconds, not {t}"
        )),
        _ => Ok(()),
    }
}

impl TestSpec {
    /// The deadline of `step`: its own, the test's, or `default`.
    pub fn timeout_of(&self, step: &Step, default: f64) -> f64 {
        step.timeout_s.or(self.step_timeout_s).unwrap_or(default)
    }

    /// The test's kernel switches (command line on a cold boot, `/proc/sys`
    /// after a restore).
    pub fn switches(&self) -> crate::guest::deliver::Switches {
        crate::guest::deliver::Switches {
            panic_on_warn: self.panic_on_warn,
            panic_on_oops: self.panic_on_oops,
        }
    }

    /// The step at `position` of [`TestSpec::steps`] as its author sees
    /// it: `step 2 (run `cat /proc/x`)` for the second entry of `steps`,
    /// `insmod hello (from \`modules\`)` for one the shorthand added.
    pub fn step_label(&self, position: usize) -> String {
        let Some(step) = self.steps.get(position) else {
            return format!("step {}", position + 1);
        };
        match step.origin {
            Origin::Listed(k) => format!("step {} ({})", k + 1, step.action),
            Origin::Modules => format!("{} (from `modules`)", step.action),
            Origin::Generated => {
                // Steps modvm put before this one do not count.
                let added = self.steps[..position]
                    .iter()
                    .filter(|s| s.origin == Origin::Faults)
                    .count();
                format!("step {} ({})", position + 1 - added, step.action)
            }
            Origin::Faults => "modvm's fault-injection helper".into(),
            Origin::Dependencies => format!(
                "{} (the kernel's own modules the test's modules depend on)",
                step.action
            ),
        }
    }

    /// Whether the test runs on `profile`.
    pub fn runs_on(&self, profile: &str) -> bool {
        self.kernels.is_empty() || self.kernels.iter().any(|k| k == profile)
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: String,
    /// Shorthand: insmod these in order before `steps`, rmmod them in
    /// reverse order after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    modules: Vec<ModuleLoad>,
    #[serde(default)]
    steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repeat: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    kernels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expect_crash: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    panic_on_warn: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    panic_on_oops: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    step_timeout_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    smp: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    files: Vec<FileSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    devices: Vec<DeviceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    faults: Option<FaultsSpec>,
    #[serde(default, skip_serializing_if = "kunit::KunitFilter::is_empty")]
    kunit: kunit::KunitFilter,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl TryFrom<RawTest> for TestSpec {
    type Error = String;
    fn try_from(r: RawTest) -> Result<TestSpec, String> {
        if r.name.trim().is_empty() {
            return Err("a test needs a non-empty `name`".into());
        }
        check_printable("test name", &r.name)?;
        let repeat = r.repeat.unwrap_or(1);
        if repeat == 0 || repeat > 10_000 {
            return Err(format!(
                "`repeat` must be between 1 and 10000, not {repeat}"
            ));
        }
        if matches!(&r.expect_crash, Some(t) if t.trim().is_empty()) {
            return Err("`expect_crash` needs part of the expected crash title, e.g. \"NULL pointer dereference\"".into());
        }
        check_timeout("step_timeout_s", r.step_timeout_s)?;
        devices::check_list(&r.devices)?;
        if let Some(n) = r.smp {
            if n == 0 || n > MAX_SMP {
                return Err(format!("`smp` must be between 1 and {MAX_SMP}, not {n}"));
            }
        }
        let shorthand = |action| Step {
            origin: Origin::Modules,
            ..Step::action(action)
        };
        let mut steps: Vec<Step> = r
            .modules
            .iter()
            .map(|m| shorthand(Action::Insmod(m.clone())))
            .collect();
        steps.extend(r.steps.into_iter().enumerate().map(|(k, s)| Step {
            origin: Origin::Listed(k),
            ..s
        }));
        steps.extend(
            r.modules
                .iter()
                .rev()
                .map(|m| shorthand(Action::Rmmod(m.name.clone()))),
        );
        if steps.is_empty() {
            return Err(format!(
                "test {:?} has no steps; add `steps` or `modules`",
                r.name
            ));
        }
        Ok(TestSpec {
            name: r.name,
            steps,
            repeat,
            kernels: r.kernels,
            expect_crash: r.expect_crash,
            panic_on_warn: r.panic_on_warn,
            panic_on_oops: r.panic_on_oops,
            step_timeout_s: r.step_timeout_s,
            smp: r.smp,
            files: r.files,
            devices: r.devices,
            faults: r.faults,
            kunit: r.kunit,
        })
    }
}

impl From<TestSpec> for RawTest {
    fn from(t: TestSpec) -> RawTest {
        RawTest {
            name: t.name,
            modules: Vec::new(),
            steps: t.steps,
            repeat: (t.repeat != 1).then_some(t.repeat),
            kernels: t.kernels,
            expect_crash: t.expect_crash,
            panic_on_warn: t.panic_on_warn,
            panic_on_oops: t.panic_on_oops,
            step_timeout_s: t.step_timeout_s,
            smp: t.smp,
            files: t.files,
            devices: t.devices,
            faults: t.faults,
            kunit: t.kunit,
        }
    }
}

/// A module to load, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleLoad {
    pub name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

impl ModuleLoad {
    pub fn named(name: &str) -> ModuleLoad {
        ModuleLoad {
            name: name.to_string(),
            params: BTreeMap::new(),
        }
    }
}

/// `"hello"` or `{"name": "hello", "params": {"who": "world", "count": 3}}`.
impl<'de> Deserialize<'de> for ModuleLoad {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ModuleLoad;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a module name or {\"name\": ..., \"params\": {...}}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ModuleLoad, E> {
                module_name(v)
                    .map(|n| ModuleLoad::named(&n))
                    .map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ModuleLoad, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Full {
                    name: String,
                    #[serde(default)]
                    params: BTreeMap<String, ParamValue>,
                }
                let full = Full::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                let name = module_name(&full.name).map_err(serde::de::Error::custom)?;
                module_load(&name, full.params).map_err(serde::de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A module with checked parameter names.
fn module_load(name: &str, params: BTreeMap<String, ParamValue>) -> Result<ModuleLoad, String> {
    let mut load = ModuleLoad::named(name);
    for (k, v) in params {
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{k:?} is not a module parameter name (letters, digits and _)"
            ));
        }
        load.params.insert(k, v.0);
    }
    Ok(load)
}

/// A parameter value: string, number or boolean, passed to insmod as text
/// (and written back as text in the spec saved with a test's logs).
struct ParamValue(String);

impl Serialize for ParamValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(ParamValue(s)),
            serde_json::Value::Number(n) => Ok(ParamValue(n.to_string())),
            serde_json::Value::Bool(b) => Ok(ParamValue(if b { "Y" } else { "N" }.into())),
            other => Err(serde::de::Error::custom(format!(
                "a module parameter is a string, number or boolean, not {other}"
            ))),
        }
    }
}

/// One command in the guest and what it must produce.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RawStep", into = "RawStep")]
pub struct Step {
    pub action: Action,
    /// How the command must end.
    pub exit: ExitExpect,
    /// Lines the command's output must contain, in order.
    pub output: Vec<Expect>,
    /// Lines the command's output must not contain.
    pub not_output: Vec<Expect>,
    /// printk lines that must appear during the step, in this order.
    pub kernel_log: Vec<Expect>,
    /// printk lines that must not appear during the step.
    pub not_kernel_log: Vec<Expect>,
    /// Deadline of this step; `None` takes the test's `step_timeout_s`.
    pub timeout_s: Option<f64>,
    /// Where the author wrote the step, so reports name it as they see it.
    pub origin: Origin,
}

/// Where a step of a test came from: reports number steps as the spec's
/// author wrote them, not as the expanded list runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The step at this 0-based position of the test's `steps`.
    Listed(usize),
    /// An insmod or rmmod the `modules` shorthand added.
    Modules,
    /// Made by modvm (a smoke test): its position in the test is its name.
    Generated,
    /// The `modprobe` of the kernel's own modules that the test's modules
    /// depend on, put before the test's steps.
    Dependencies,
    /// The loading and arming of modvm's fault-injection helper, put
    /// before the `insmod` it injects into.
    Faults,
}

impl Step {
    /// A step that only runs `action` and expects success.
    pub fn action(action: Action) -> Step {
        Step {
            origin: Origin::Generated,
            action,
            exit: ExitExpect::Status(0),
            output: Vec::new(),
            not_output: Vec::new(),
            kernel_log: Vec::new(),
            not_kernel_log: Vec::new(),
            timeout_s: None,
        }
    }
}

/// The expected end of a command.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExitExpect {
    Status(i32),
    /// insmod fails with this errno (exit status non-zero and busybox's
    /// message for the errno in the output).
    Errno(Errno),
}

/// What a step does in the guest.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `insmod /modules/<name>.ko [params]`
    Insmod(ModuleLoad),
    /// `rmmod <name>`
    Rmmod(String),
    /// `modprobe <name> [params]`: one of the kernel's own modules, with
    /// what it depends on.
    Modprobe(ModuleLoad),
    /// Any shell command (run from `/modules`).
    Run(String),
}

impl Action {
    /// The shell command sent to the guest.
    pub fn command(&self) -> String {
        match self {
            Action::Insmod(m) => with_params(format!("insmod /modules/{}.ko", m.name), m),
            Action::Modprobe(m) => with_params(format!("modprobe {}", m.name), m),
            Action::Rmmod(m) => format!("rmmod {m}"),
            Action::Run(c) => c.clone(),
        }
    }

    /// Module named by insmod/rmmod, if any.
    pub fn module(&self) -> Option<&str> {
        match self {
            Action::Insmod(m) | Action::Modprobe(m) => Some(&m.name),
            Action::Rmmod(m) => Some(m),
            Action::Run(_) => None,
        }
    }
}

/// `command` followed by the module's parameters, quoted for the shell.
fn with_params(mut command: String, m: &ModuleLoad) -> String {
    for (k, v) in &m.params {
        command.push(' ');
        command.push_str(&shell_quote(&format!("{k}={}", kernel_quote(v))));
    }
    command
}

/// The kernel splits module arguments at spaces unless double-quoted.
fn kernel_quote(v: &str) -> String {
    if v.contains(' ') {
        format!("\"{v}\"")
    } else {
        v.to_string()
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Insmod(m) if m.params.is_empty() => write!(f, "insmod {}", m.name),
            Action::Insmod(m) => {
                let params: Vec<String> =
                    m.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "insmod {} {}", m.name, params.join(" "))
            }
            Action::Rmmod(m) => write!(f, "rmmod {m}"),
            Action::Modprobe(m) if m.params.is_empty() => write!(f, "modprobe {}", m.name),
            Action::Modprobe(m) => {
                let params: Vec<String> =
                    m.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "modprobe {} {}", m.name, params.join(" "))
            }
            Action::Run(c) => write!(f, "run `{c}`"),
        }
    }
}

/// An expected line: `"text"` (contains), `{"contains": "text"}` or
/// `{"regex": "^text$"}`.
#[derive(Debug, Clone)]
pub enum Expect {
    /// The line contains this text.
    Contains(String),
    /// The line (without its timestamp) matches this regex.
    Regex(Pattern),
}

impl Expect {
    pub fn matches(&self, line: &str) -> bool {
        match self {
            Expect::Contains(s) => line.contains(s.as_str()),
            Expect::Regex(p) => p.0.is_match(line),
        }
    }
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Expect;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, {\"contains\": \"...\"} or {\"regex\": \"...\"}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Expect, E> {
                Ok(Expect::Contains(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Expect, A::Error> {
                const KINDS: &[&str] = &["contains", "regex"];
                let Some(kind) = map.next_key::<String>()? else {
                    return Err(serde::de::Error::custom(
                        "an expectation needs `contains` or `regex`",
                    ));
                };
                let e = match kind.as_str() {
                    "contains" => Expect::Contains(map.next_value()?),
                    "regex" => Expect::Regex(map.next_value()?),
                    other => return Err(serde::de::Error::unknown_variant(other, KINDS)),
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(serde::de::Error::custom(
                        "an expectation has exactly one of `contains` or `regex`; write two expectations",
                    ));
                }
                Ok(e)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Expect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Expect::Contains(t) => m.serialize_entry("contains", t)?,
            Expect::Regex(p) => m.serialize_entry("regex", p)?,
        }
        m.end()
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Contains(s) => write!(f, "a line containing {s:?}"),
            Expect::Regex(p) => write!(f, "a line matching /{}/", p.0.as_str()),
        }
    }
}

/// A regex checked when the spec is read.
#[derive(Debug, Clone)]
pub struct Pattern(pub Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Regex::new(&s)
            .map(Pattern)
            .map_err(|e| serde::de::Error::custom(format!("invalid regex {s:?}: {e}")))
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// An `exit` value: a shell exit status, 0 to 255 (checked while parsing,
/// so the error has the value's position).
#[derive(Clone, Copy)]
struct ExitStatus(i32);

impl<'de> Deserialize<'de> for ExitStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ExitStatus;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("i32 (an exit status, 0 to 255)")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ExitStatus, E> {
                match i32::try_from(n) {
                    Ok(code) if (0..=255).contains(&code) => Ok(ExitStatus(code)),
                    _ => Err(E::custom(format!(
                        "`exit` must be between 0 and 255 (a command's exit status), not {n}"
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ExitStatus, E> {
                match i64::try_from(n) {
                    Ok(n) => self.visit_i64(n),
                    Err(_) => Err(E::custom(format!(
                        "`exit` must be between 0 and 255 (a command's exit status), not {n}"
                    ))),
                }
            }
        }
        d.deserialize_i64(V)
    }
}

impl Serialize for ExitStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(self.0)
    }
}

/// An `errno` value: a name (`"EINVAL"`, `"-EINVAL"`) or a number (`22`,
/// `-22`, `"22"`), checked while parsing so the error has the value's
/// position.
#[derive(Clone, Copy)]
struct ErrnoValue(Errno);

impl<'de> Deserialize<'de> for ErrnoValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ErrnoValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an errno name such as \"EINVAL\" or its number such as 22")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ErrnoValue, E> {
                errno::lookup(v).map(ErrnoValue).ok_or_else(|| {
                    E::custom(format!(
                        "unknown errno {v:?}; known: {}",
                        errno::names().join(", ")
                    ))
                })
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ErrnoValue, E> {
                errno::by_number(n).map(ErrnoValue).ok_or_else(|| {
                    E::custom(format!(
                        "unknown errno number {n}; give its name instead, one of: {}",
                        errno::names().join(", ")
                    ))
                })
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ErrnoValue, E> {
                match i64::try_from(n) {
                    Ok(n) => self.visit_i64(n),
                    Err(_) => Err(E::custom(format!(
                        "unknown errno number {n}; give its name instead, e.g. \"EINVAL\""
                    ))),
                }
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<ErrnoValue, E> {
                Err(E::custom(format!(
                    "`errno` {n} is not a whole number; give a name such as \"EINVAL\" or a number such as 22"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ErrnoValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name)
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    insmod: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    params: BTreeMap<String, ParamValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rmmod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    modprobe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exit: Option<ExitStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    errno: Option<ErrnoValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    output: Vec<Expect>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    not_output: Vec<Expect>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    kernel_log: Vec<Expect>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    not_kernel_log: Vec<Expect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_s: Option<f64>,
}

impl TryFrom<RawStep> for Step {
    type Error = String;
    fn try_from(r: RawStep) -> Result<Step, String> {
        if !r.params.is_empty() && r.insmod.is_none() && r.modprobe.is_none() {
            return Err("`params` belongs to an `insmod` or `modprobe` step".into());
        }
        let action = match (r.insmod, r.rmmod, r.run) {
            (None, None, None) if r.modprobe.is_some() => {
                let m = r.modprobe.unwrap_or_default();
                Action::Modprobe(module_load(&module_name(&m)?, r.params)?)
            }
            _ if r.modprobe.is_some() => {
                return Err(
                    "a step has exactly one of `insmod`, `rmmod`, `modprobe` or `run`; split it into two steps"
                        .into(),
                )
            }
            (Some(m), None, None) => {
                Action::Insmod(module_load(&module_name(&m)?, r.params)?)
            }
            (None, Some(m), None) => Action::Rmmod(module_name(&m)?),
            (None, None, Some(c)) if c.len() > MAX_COMMAND_BYTES => {
                return Err(format!(
                    "`run` is {} bytes; a command is at most {MAX_COMMAND_BYTES} bytes (the guest reads it as one terminal line): split it into several steps",
                    c.len()
                ))
            }
            (None, None, Some(c)) if !c.trim().is_empty() => Action::Run(c),
            (None, None, Some(_)) => return Err("`run` needs a command".into()),
            (None, None, None) => {
                return Err("a step needs one of `insmod`, `rmmod`, `modprobe` or `run`".into())
            }
            _ => {
                return Err(
                    "a step has exactly one of `insmod`, `rmmod` or `run`; split it into two steps"
                        .into(),
                )
            }
        };
        let exit = match (r.exit, r.errno) {
            (Some(_), Some(_)) => {
                return Err(
                    "give `exit` or `errno`, not both (`errno` implies a failing insmod)".into(),
                )
            }
            (None, Some(e)) => {
                if !matches!(action, Action::Insmod(_)) {
                    return Err(
                        "`errno` belongs to an `insmod` step; for other commands use `exit`".into(),
                    );
                }
                ExitExpect::Errno(e.0)
            }
            (Some(code), None) => ExitExpect::Status(code.0),
            (None, None) => ExitExpect::Status(0),
        };
        check_timeout("timeout_s", r.timeout_s)?;
        Ok(Step {
            action,
            exit,
            output: r.output,
            not_output: r.not_output,
            kernel_log: r.kernel_log,
            not_kernel_log: r.not_kernel_log,
            timeout_s: r.timeout_s,
            origin: Origin::Generated,
        })
    }
}

impl From<Step> for RawStep {
    fn from(s: Step) -> RawStep {
        let mut params = BTreeMap::new();
        let mut modprobe = None;
        let (insmod, rmmod, run) = match s.action {
            Action::Insmod(m) => {
                params = m
                    .params
                    .into_iter()
                    .map(|(k, v)| (k, ParamValue(v)))
                    .collect();
                (Some(m.name), None, None)
            }
            Action::Modprobe(m) => {
                params = m
                    .params
                    .into_iter()
                    .map(|(k, v)| (k, ParamValue(v)))
                    .collect();
                modprobe = Some(m.name);
                (None, None, None)
            }
            Action::Rmmod(m) => (None, Some(m), None),
            Action::Run(c) => (None, None, Some(c)),
        };
        let (exit, errno) = match s.exit {
            ExitExpect::Status(c) => (Some(ExitStatus(c)), None),
            ExitExpect::Errno(e) => (None, Some(ErrnoValue(e))),
        };
        RawStep {
            insmod,
            params,
            rmmod,
            modprobe,
            run,
            exit,
            errno,
            output: s.output,
            not_output: s.not_output,
            kernel_log: s.kernel_log,
            not_kernel_log: s.not_kernel_log,
            timeout_s: s.timeout_s,
        }
    }
}

/// A module name as insmod/rmmod see it: `hello`, not `hello.ko`.
fn module_name(m: &str) -> Result<String, String> {
    let name = m.strip_suffix(".ko").unwrap_or(m).to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "{m:?} is not a module name; give the name of the .ko without path, e.g. \"hello\""
        ));
    }
    Ok(name)
}

/// The test a module directory without a spec gets: load every module
/// (dependencies first), unload in reverse; the runner's crash and taint
/// checks do the rest. Takes the `.ko` files' stems: insmod needs the file
/// (`my-dash.ko`), rmmod the kernel's name (`my_dash`).
pub fn smoke_test(files_in_load_order: &[String]) -> TestSpec {
    let load = files_in_load_order
        .iter()
        .map(|m| Step::action(Action::Insmod(ModuleLoad::named(m))));
    let unload = files_in_load_order
        .iter()
        .rev()
        .map(|m| Step::action(Action::Rmmod(crate::kbuild::module_name(m))));
    TestSpec {
        name: "smoke".into(),
        steps: load.chain(unload).collect(),
        repeat: 1,
        kernels: Vec::new(),
        expect_crash: None,
        panic_on_warn: false,
        panic_on_oops: false,
        step_timeout_s: None,
        smp: None,
        files: Vec::new(),
        devices: Vec::new(),
        faults: None,
        kunit: kunit::KunitFilter::default(),
    }
}

/// A spec that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Semantic { path: PathBuf, message: String },
}

impl SpecError {
    /// An error about a value found in the spec text after parsing (serde
    /// has no spans): placed at the `nth` (0-based) occurrence of `value` as
    /// a JSON string, or without a position when it cannot be found.
    pub fn at_value(
        path: &Path,
        text: &str,
        value: &str,
        nth: usize,
        message: String,
    ) -> SpecError {
        match locate_string(text, value, nth) {
            Some((line, column)) => SpecError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            },
            None => SpecError::Semantic {
                path: path.to_path_buf(),
                message,
            },
        }
    }
}

/// Line and column (1-based) of the `nth` JSON string literal equal to
/// `value` (also matching a `.ko` suffix, as module names may carry one).
fn locate_string(text: &str, value: &str, nth: usize) -> Option<(usize, usize)> {
    let quoted = serde_json::to_string(value).ok()?;
    let with_ko = serde_json::to_string(&format!("{value}.ko")).ok()?;
    let mut hits: Vec<usize> = text
        .match_indices(quoted.as_str())
        .chain(text.match_indices(with_ko.as_str()))
        .map(|(i, _)| i)
        .filter(|&i| {
            // A value, not a key: the next non-space character is not ':'.
            let after = &text[i..];
            let len = if after.starts_with(quoted.as_str()) {
                quoted.len()
            } else {
                with_ko.len()
            };
            !after[len..].trim_start().starts_with(':')
        })
        .collect();
    hits.sort_unstable();
    let at = *hits.get(nth)?;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|p| p + 1).unwrap_or(0) + 1;
    Some((line, column))
}

/// A spec file (or a module directory without one) with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    /// The spec file; for a directory without one, where it would be.
    pub path: PathBuf,
    /// The module directory (the spec's parent).
    pub dir: PathBuf,
    pub suite: String,
    pub spec: SpecFile,
    /// The spec's text, to place errors found after parsing.
    pub text: String,
    /// No spec file: the tests are one smoke test made after the build.
    pub smoke: bool,
}

/// Reads a spec file or the spec of a module directory. A module directory
/// without a spec (but with a Kbuild, a Makefile or a `dkms.conf`) gets a
/// smoke test.
pub fn load(path: &Path) -> Result<LoadedSpec, SpecError> {
    let file = if path.is_dir() {
        path.join(SPEC_FILE)
    } else {
        path.to_path_buf()
    };
    let has_build_file = ["Kbuild", "Makefile", crate::kbuild::dkms_conf::FILE]
        .iter()
        .any(|f| path.join(f).is_file());
    if path.is_dir() && !file.exists() && !has_build_file {
        return Err(SpecError::Semantic {
            path: path.to_path_buf(),
            message: format!(
                "no {SPEC_FILE}, Kbuild, Makefile or dkms.conf here: nothing says what to build or test; add a Kbuild with `obj-m := <name>.o` (modvm then loads and unloads the module), or name a module directory"
            ),
        });
    }
    let smoke = path.is_dir() && !file.exists() && has_build_file;
    let (spec, text) = if smoke {
        let empty = SpecFile {
            suite: None,
            files: Vec::new(),
            helpers: Vec::new(),
            guest_packages: Vec::new(),
            tests: Vec::new(),
        };
        (empty, String::new())
    } else {
        let text = std::fs::read_to_string(&file).map_err(|source| SpecError::Read {
            path: file.clone(),
            source,
        })?;
        let text = without_bom(&text).to_string();
        (parse(&text, &file)?, text)
    };
    let dir = file
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let suite = match &spec.suite {
        Some(s) => s.clone(),
        None => {
            let name = std::fs::canonicalize(&dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "module".to_string());
            check_printable("directory name", &name).map_err(|m| SpecError::Semantic {
                path: dir.clone(),
                message: format!(
                    "{m}: it names the suite; rename the directory or set `suite` in its {SPEC_FILE}"
                ),
            })?;
            name
        }
    };
    let loaded = LoadedSpec {
        path: file,
        dir,
        suite,
        spec,
        text,
        smoke,
    };
    files::check_on_disk(&loaded)?;
    Ok(loaded)
}

/// Editors on Windows start UTF-8 files with a byte-order mark; JSON has
/// no place for one.
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Parses spec text; `origin` names the file in errors.
pub fn parse(text: &str, origin: &Path) -> Result<SpecFile, SpecError> {
    let text = without_bom(text);
    let spec: SpecFile = serde_json::from_str(text).map_err(|e| SpecError::Invalid {
        path: origin.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: explain(&e),
    })?;
    let semantic = |message: String| SpecError::Semantic {
        path: origin.to_path_buf(),
        message,
    };
    if spec.tests.is_empty() {
        return Err(semantic("`tests` is empty; add at least one test".into()));
    }
    if let Some(suite) = &spec.suite {
        check_suite(suite).map_err(|m| SpecError::at_value(origin, text, suite, 0, m))?;
    }
    if spec.guest_packages.len() > crate::kernel::guest_packages::MAX_PACKAGES {
        return Err(semantic(format!(
            "`guest_packages` names {} packages; at most {}",
            spec.guest_packages.len(),
            crate::kernel::guest_packages::MAX_PACKAGES
        )));
    }
    for name in &spec.guest_packages {
        check_package_name(name).map_err(|m| SpecError::at_value(origin, text, name, 0, m))?;
    }
    let mut seen = std::collections::HashSet::new();
    for t in &spec.tests {
        if !seen.insert(&t.name) {
            return Err(SpecError::at_value(
                origin,
                text,
                &t.name,
                1,
                format!("two tests are named {:?}; names must be unique", t.name),
            ));
        }
    }
    Ok(spec)
}

/// A Debian package name, as Debian policy allows them (lower case,
/// digits, `+ - .`, starting with a letter or digit).
fn check_package_name(name: &str) -> Result<(), String> {
    let ok = name.len() >= 2
        && name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} in `guest_packages` is not a Debian package name (lower case letters, digits, `+ - .`)"
        ))
    }
}

/// A suite name prefixes test names as `suite/test`, which reports split at
/// the first `/`: it may not contain one.
fn check_suite(suite: &str) -> Result<(), String> {
    if suite.trim().is_empty() {
        return Err(
            "`suite` is empty; give a name or leave `suite` out to use the directory's name".into(),
        );
    }
    if suite.contains('/') {
        return Err(format!(
            "`suite` {suite:?} contains `/`, which separates suite and test in reports; use another character such as `-`"
        ));
    }
    check_printable("suite name", suite)
}

/// serde's message, plus a "did you mean" for misspelt fields and variants.
fn explain(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    // serde_json appends " at line L column C"; the caller prints the position.
    let msg = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    match suggestion(&msg) {
        Some(s) => format!("{msg}; did you mean `{s}`?"),
        None => msg,
    }
}

/// For "unknown field `x`, expected one of `a`, `b`": the closest candidate.
fn suggestion(msg: &str) -> Option<String> {
    let rest = msg
        .strip_prefix("unknown field `")
        .or_else(|| msg.strip_prefix("unknown variant `"))?;
    let (bad, candidates) = rest.split_once('`')?;
    candidates
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|c| (edit_distance(bad, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min()
        .map(|(_, c)| c.to_string())
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Path::new("m/modvm.json"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn hello_spec_parses() {
        let text = include_str!("../../module/modvm.json");
        let spec = parse(text, Path::new("module/modvm.json")).unwrap();
        let steps = &spec.tests[0].steps;
        assert_eq!(steps[0].action, Action::Insmod(ModuleLoad::named("hello")));
        assert_eq!(steps[0].action.command(), "insmod /modules/hello.ko");
        assert_eq!(steps[1].action.command(), "rmmod hello");
        assert!(steps[1].kernel_log[0].matches("Goodbye, Kernel World!"));
        assert!(!steps[1].kernel_log[0].matches("Goodbye, Kernel World!!"));
    }

    #[test]
    fn syntax_error_has_position() {
        let e = err("{\n  \"tests\": [\n    {\"name\": \"a\",, }\n  ]\n}");
        assert!(e.starts_with("m/modvm.json:3:"), "{e}");
    }

    #[test]
    fn unknown_field_suggests_the_right_one() {
        let e = err(r#"{"tests": [{"name": "a", "steps": [{"insmod": "x", "kernel_lgo": []}]}]}"#);
        assert!(e.contains("unknown field `kernel_lgo`"), "{e}");
        assert!(e.contains("did you mean `kernel_log`?"), "{e}");
        assert!(e.starts_with("m/modvm.json:1:"), "{e}");
    }

    #[test]
    fn unknown_expect_kind_suggests() {
        let e = err(
            r#"{"tests": [{"name": "a", "steps": [{"insmod": "x", "kernel_log": [{"contain": "y"}]}]}]}"#,
        );
        assert!(e.contains("did you mean `contains`?"), "{e}");
    }

    #[test]
    fn bad_regex_is_reported_with_position() {
        let e = err("{\"tests\": [{\"name\": \"a\", \"steps\": [\n{\"rmmod\": \"x\", \"kernel_log\": [{\"regex\": \"(\"}]}]}]}");
        assert!(e.starts_with("m/modvm.json:2:"), "{e}");
        assert!(e.contains("invalid regex"), "{e}");
    }

    #[test]
    fn step_needs_exactly_one_action() {
        assert!(
            err(r#"{"tests": [{"name": "a", "steps": [{"exit": 1}]}]}"#).contains("needs one of")
        );
        assert!(
            err(r#"{"tests": [{"name": "a", "steps": [{"insmod": "x", "rmmod": "x"}]}]}"#)
                .contains("exactly one")
        );
    }

    #[test]
    fn wrong_type_is_explained() {
        let e = err(r#"{"tests": [{"name": "a", "steps": [{"insmod": "x", "exit": "0"}]}]}"#);
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn module_names_are_checked() {
        assert!(
            err(r#"{"tests": [{"name": "a", "steps": [{"insmod": "../x"}]}]}"#)
                .contains("not a module name")
        );
        let ok = parse(
            r#"{"tests": [{"name": "a", "steps": [{"insmod": "x.ko"}]}]}"#,
            Path::new("f"),
        )
        .unwrap();
        assert_eq!(
            ok.tests[0].steps[0].action,
            Action::Insmod(ModuleLoad::named("x"))
        );
    }

    #[test]
    fn duplicate_and_empty_tests_are_refused() {
        assert!(err(r#"{"tests": []}"#).contains("empty"));
        assert!(err(r#"{"tests": [{"name": "a", "steps": []}]}"#).contains("no steps"));
        let dup = r#"{"tests": [{"name": "a", "steps": [{"run": "true"}]}, {"name": "a", "steps": [{"run": "true"}]}]}"#;
        let e = err(dup);
        assert!(e.contains("unique"), "{e}");
        assert!(
            e.starts_with("m/modvm.json:1:64:"),
            "the second name is placed: {e}"
        );
    }

    #[test]
    fn values_are_located_but_keys_are_not() {
        let text =
            "{\n  \"insmod\": \"a\",\n  \"x\": [\"hello\", \"hello.ko\"],\n  \"hello\": 1\n}";
        assert_eq!(locate_string(text, "hello", 0), Some((3, 9)));
        assert_eq!(locate_string(text, "hello", 1), Some((3, 18)));
        assert_eq!(locate_string(text, "hello", 2), None);
    }

    #[test]
    fn every_feature_example_parses() {
        let text = include_str!("../tests/fixtures/features/modvm.json");
        let spec = parse(text, Path::new("features/modvm.json")).unwrap();
        let first = &spec.tests[0];
        assert_eq!(
            first.steps.len(),
            4 + 4,
            "modules expand to insmod before and rmmod after"
        );
        assert_eq!(
            first.steps[1].action.command(),
            "insmod /modules/features_user.ko count=3 'who=\"modvm tester\"'"
        );
        assert_eq!(
            first.steps.last().unwrap().action,
            Action::Rmmod("features_base".into())
        );
        assert_eq!(spec.tests[3].repeat, 5);
        assert!(!spec.tests[4].runs_on("debian-6.1-cloud"));
        assert!(matches!(spec.tests[2].steps[1].exit, ExitExpect::Errno(e) if e.number == 22));
    }

    #[test]
    fn errno_only_on_insmod_and_not_with_exit() {
        assert!(
            err(r#"{"tests": [{"name": "a", "steps": [{"run": "x", "errno": "EINVAL"}]}]}"#)
                .contains("belongs to an `insmod`")
        );
        assert!(err(r#"{"tests": [{"name": "a", "steps": [{"insmod": "x", "errno": "EINVAL", "exit": 1}]}]}"#).contains("not both"));
        assert!(
            err(r#"{"tests": [{"name": "a", "steps": [{"insmod": "x", "errno": "EWHAT"}]}]}"#)
                .contains("unknown errno")
        );
    }

    #[test]
    fn errno_may_be_a_known_number_and_an_unknown_one_is_placed() {
        let ok = parse(
            r#"{"tests": [{"name": "a", "steps": [{"insmod": "x", "errno": 22}, {"insmod": "x", "errno": -19}]}]}"#,
            Path::new("f"),
        )
        .unwrap();
        assert!(matches!(ok.tests[0].steps[0].exit, ExitExpect::Errno(e) if e.name == "EINVAL"));
        assert!(matches!(ok.tests[0].steps[1].exit, ExitExpect::Errno(e) if e.name == "ENODEV"));
        let e = err("{\"tests\": [{\"name\": \"a\", \"steps\": [\n  {\"insmod\": \"x\", \"errno\": 4242}]}]}");
        assert!(e.starts_with("m/modvm.json:2:"), "{e}");
        assert!(e.contains("unknown errno number 4242"), "{e}");
        let e = err(r#"{"tests": [{"name": "a", "steps": [{"insmod": "x", "errno": 2.5}]}]}"#);
        assert!(e.contains("not a whole number"), "{e}");
    }

    #[test]
    fn steps_are_labelled_as_the_author_wrote_them() {
        let ok = parse(
            r#"{"tests": [{"name": "a", "modules": ["m"], "steps": [{"run": "one"}, {"run": "two"}]}]}"#,
            Path::new("f"),
        )
        .unwrap();
        let t = &ok.tests[0];
        assert_eq!(t.step_label(0), "insmod m (from `modules`)");
        assert_eq!(t.step_label(2), "step 2 (run `two`)");
        assert_eq!(t.step_label(3), "rmmod m (from `modules`)");
        assert_eq!(smoke_test(&["x".into()]).step_label(1), "step 2 (rmmod x)");
    }

    #[test]
    fn parameter_names_are_checked_in_both_forms() {
        let step =
            r#"{"tests": [{"name": "a", "steps": [{"insmod": "x", "params": {"a b": 1}}]}]}"#;
        assert!(err(step).contains("not a module parameter name"));
        let short = r#"{"tests": [{"name": "a", "modules": [{"name": "x", "params": {"": 1}}]}]}"#;
        assert!(err(short).contains("not a module parameter name"));
    }

    #[test]
    fn overlong_command_is_refused() {
        let long = "x".repeat(MAX_COMMAND_BYTES + 1);
        let e = err(&format!(
            r#"{{"tests": [{{"name": "a", "steps": [{{"run": "{long}"}}]}}]}}"#
        ));
        assert!(e.contains("at most 2048 bytes"), "{e}");
    }

    #[test]
    fn plain_string_expectation_means_contains() {
        let ok = parse(
            r#"{"tests": [{"name": "a", "steps": [{"run": "x", "output": ["y"]}]}]}"#,
            Path::new("f"),
        )
        .unwrap();
        assert!(ok.tests[0].steps[0].output[0].matches("xyz"));
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let text = format!("\u{feff}{}", include_str!("../../module/modvm.json"));
        parse(&text, Path::new("f")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SPEC_FILE), &text).unwrap();
        let loaded = load(dir.path()).unwrap();
        assert!(!loaded.text.starts_with('\u{feff}'));
    }

    #[test]
    fn timeouts_say_what_range_is_allowed() {
        let e = err(r#"{"tests": [{"name": "a", "step_timeout_s": 0, "steps": [{"run": "x"}]}]}"#);
        assert!(
            e.contains("must be greater than 0 and at most 86400 seconds, not 0"),
            "{e}"
        );
        let e = err(r#"{"tests": [{"name": "a", "steps": [{"run": "x", "timeout_s": -1}]}]}"#);
        assert!(e.contains("greater than 0"), "{e}");
    }

    #[test]
    fn exit_status_out_of_range_is_refused_at_its_place() {
        for bad in ["300", "-1", "256", "4294967296", "18446744073709551615"] {
            let e = err(&format!(
                "{{\"tests\": [{{\"name\": \"a\", \"steps\": [\n  {{\"run\": \"x\", \"exit\": {bad}}}]}}]}}"
            ));
            assert!(e.starts_with("m/modvm.json:2:"), "{e}");
            assert!(e.contains("between 0 and 255"), "{e}");
        }
        let ok = parse(
            r#"{"tests": [{"name": "a", "steps": [{"run": "x", "exit": 255}]}]}"#,
            Path::new("f"),
        )
        .unwrap();
        assert_eq!(ok.tests[0].steps[0].exit, ExitExpect::Status(255));
    }

    #[test]
    fn control_characters_in_names_are_refused() {
        let e = err(r#"{"tests": [{"name": "a\nb", "steps": [{"run": "x"}]}]}"#);
        assert!(e.contains("control characters"), "{e}");
        let e = err(r#"{"tests": [{"name": "a\u0000", "steps": [{"run": "x"}]}]}"#);
        assert!(e.contains("control characters"), "{e}");
        let e =
            err(r#"{"suite": "s\u001b[31m", "tests": [{"name": "a", "steps": [{"run": "x"}]}]}"#);
        assert!(e.contains("control characters"), "{e}");
    }

    #[test]
    fn a_suite_with_a_slash_or_empty_is_refused_with_its_place() {
        let e = err(
            "{\n\"suite\": \"a/b\", \"tests\": [{\"name\": \"a\", \"steps\": [{\"run\": \"x\"}]}]}",
        );
        assert!(e.starts_with("m/modvm.json:2:10: "), "{e}");
        assert!(e.contains("contains `/`"), "{e}");
        let e = err(r#"{"suite": " ", "tests": [{"name": "a", "steps": [{"run": "x"}]}]}"#);
        assert!(e.contains("`suite` is empty"), "{e}");
    }

    #[test]
    fn a_directory_name_with_a_newline_cannot_name_a_suite() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("bad\nname");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("Kbuild"), "obj-m := x.o").unwrap();
        let e = load(&dir).unwrap_err().to_string();
        assert!(
            e.contains("control characters") && e.contains("set `suite`"),
            "{e}"
        );
    }

    #[test]
    fn guest_packages_must_be_debian_package_names() {
        let ok = r#"{"guest_packages": ["iptables", "libc6", "g++-12"], "tests": [{"name": "t", "steps": [{"run": "true"}]}]}"#;
        assert_eq!(
            parse(ok, Path::new("m/modvm.json"))
                .unwrap()
                .guest_packages
                .len(),
            3
        );
        for bad in ["Iptables", "-x", "a b", "x", "../etc"] {
            let text = format!(
                r#"{{"guest_packages": [{}], "tests": [{{"name": "t", "steps": [{{"run": "true"}}]}}]}}"#,
                serde_json::to_string(bad).unwrap()
            );
            let e = parse(&text, Path::new("m/modvm.json"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("not a Debian package name") && e.starts_with("m/modvm.json:1:"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_directory_with_nothing_to_build_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("no modvm.json, Kbuild, Makefile or dkms.conf here"),
            "{e}"
        );
        std::fs::write(dir.path().join("dkms.conf"), "PACKAGE_NAME=x\n").unwrap();
        assert!(load(dir.path()).unwrap().smoke);
    }

    #[test]
    fn smoke_test_loads_files_and_unloads_module_names() {
        let t = smoke_test(&["my-dash".into()]);
        assert_eq!(t.steps[0].action.command(), "insmod /modules/my-dash.ko");
        assert_eq!(t.steps[1].action.command(), "rmmod my_dash");
    }

    #[test]
    fn kunit_filters_are_checked_where_written() {
        let ok = parse(
            r#"{"tests": [{"name": "a", "kunit": ["s*", "t.c?"], "modules": ["m"]}]}"#,
            Path::new("f"),
        )
        .unwrap();
        assert_eq!(ok.tests[0].kunit.0.len(), 2);
        let e = err(
            "{\"tests\": [{\"name\": \"a\", \"modules\": [\"m\"],\n  \"kunit\": [\"s.c.d\"]}]}",
        );
        assert!(e.starts_with("m/modvm.json:2:"), "{e}");
        assert!(e.contains("more than one `.`"), "{e}");
        let e = err(r#"{"tests": [{"name": "a", "kunti": ["s"], "modules": ["m"]}]}"#);
        assert!(e.contains("did you mean `kunit`?"), "{e}");
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("expct", "expect"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
