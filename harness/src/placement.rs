//! Where a module under test lay in the guest's memory, kept after the
//! module is gone.
//!
//! The kernel names a frame `func+0x1c/0x40 [mod]` only while `mod` is
//! loaded, and only for its core code: once `__init` code is freed after
//! loading, and once the module is unloaded, kmemleak prints its frames as
//! bare addresses (`0xffffffffc0201c3a`). A leak in `__init` or on the exit
//! path is only seen then. So the runner records each section's address
//! right after `insmod` (from `/sys/module/<name>/sections`, the same list
//! the gdb support reads), and a bare address found later is turned back
//! into a function and offset of the module's own `.ko`, which
//! `symbolize` then takes to `file:line`.

use crate::guest::exec::Ended;
use crate::guest::Guest;
use crate::outcome::Frame;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One loaded module's sections: their addresses in the guest and the
/// functions of its `.ko` in each.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    module: String,
    /// (section, address in the guest), hidden (zero) addresses left out.
    sections: Vec<(String, u64)>,
    /// Function symbols of the `.ko`: (section, start in it, size, name).
    functions: Vec<(String, u64, u64, String)>,
}

impl Placement {
    /// A placement from section addresses as the guest printed them
    /// (`<section> 0x<address>` lines); `None` when none was readable.
    pub(crate) fn new(module: &str, ko: &Path, sections: Vec<(String, u64)>) -> Option<Placement> {
        let sections: Vec<(String, u64)> = sections.into_iter().filter(|(_, a)| *a != 0).collect();
        if sections.is_empty() {
            return None;
        }
        Some(Placement {
            module: module.to_string(),
            sections,
            functions: crate::symbolize::function_symbols(ko).unwrap_or_default(),
        })
    }

    /// A placement from the addresses of some of the module's functions
    /// (what the fault-injection helper prints while the module is coming):
    /// each function's section lies at its address less its start there.
    pub(crate) fn from_anchors(
        module: &str,
        ko: &Path,
        anchors: &[(String, u64)],
    ) -> Option<Placement> {
        let functions = crate::symbolize::function_symbols(ko)?;
        let mut sections: Vec<(String, u64)> = Vec::new();
        for (name, address) in anchors {
            let Some((section, start, _, _)) = functions.iter().find(|f| f.3 == *name) else {
                continue;
            };
            if !sections.iter().any(|(s, _)| s == section) {
                sections.push((section.clone(), address.wrapping_sub(*start)));
            }
        }
        (!sections.is_empty()).then(|| Placement {
            module: module.to_string(),
            sections,
            functions,
        })
    }

    /// The frame of the module's function that holds `address`.
    pub(crate) fn frame(&self, address: u64) -> Option<Frame> {
        self.sections
            .iter()
            .filter(|(_, base)| *base <= address)
            .filter_map(|(section, base)| {
                let offset = address - base;
                self.functions
                    .iter()
                    .find(|(s, start, size, _)| {
                        s == section && *start <= offset && offset < start + (*size).max(1)
                    })
                    .map(|(_, start, _, name)| (*base, name, offset - start))
            })
            // The nearest section below the address holds it.
            .max_by_key(|(base, _, _)| *base)
            .map(|(_, name, offset)| Frame {
                function: name.clone(),
                offset: Some(offset),
                module: Some(self.module.clone()),
                file: None,
                line: None,
            })
    }
}

/// The frame of whichever placed module holds `address`.
pub(crate) fn resolve(placements: &[Placement], address: u64) -> Option<Frame> {
    placements.iter().find_map(|p| p.frame(address))
}

/// Reads where `module` was placed, right after it was loaded; `None`
/// when the guest did not say (the module is already gone, sysfs hides
/// the addresses).
pub(crate) fn read(guest: &mut Guest, module: &str, ko: &Path) -> Option<Placement> {
    Placement::new(module, ko, read_sections(guest, module))
}

/// `/sys/module/<module>/sections`: each section's address in the guest.
pub(crate) fn read_sections(guest: &mut Guest, module: &str) -> Vec<(String, u64)> {
    let command = format!(
        "cd /sys/module/{module}/sections && for f in .* *; do [ -f \"$f\" ] && echo \"$f $(cat \"$f\")\"; done"
    );
    let capture = guest.exec(
        "module-sections",
        &command,
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
    );
    match capture.ended {
        Ended::Finished { .. } => parse_sections(&capture.output),
        _ => Vec::new(),
    }
}

/// `<section> <address>` lines, as the guest printed them.
pub(crate) fn parse_sections(output: &str) -> Vec<(String, u64)> {
    output
        .lines()
        .filter_map(|l| {
            let (name, addr) = l.trim().split_once(' ')?;
            let addr = u64::from_str_radix(addr.trim().trim_start_matches("0x"), 16).ok()?;
            Some((name.to_string(), addr))
        })
        .collect()
}

/// The placements of a test's modules, by module name: a module loaded
/// again replaces its earlier placement.
#[derive(Debug, Default)]
pub(crate) struct Placements(Vec<Placement>);

impl Placements {
    pub(crate) fn record(&mut self, placement: Placement) {
        self.0.retain(|p| p.module != placement.module);
        self.0.push(placement);
    }

    pub(crate) fn all(&self) -> &[Placement] {
        &self.0
    }
}

/// The `.ko` of `module` among a test's modules.
pub(crate) fn ko_of<'a>(module: &str, modules: &'a [PathBuf]) -> Option<&'a PathBuf> {
    modules.iter().find(|m| {
        m.file_stem()
            .is_some_and(|s| crate::kbuild::module_name(&s.to_string_lossy()) == module)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed() -> Placement {
        Placement {
            module: "leaky".into(),
            sections: vec![
                (".text".into(), 0xffff_ffff_c020_1000),
                (".init.text".into(), 0xffff_ffff_c020_6000),
                (".exit.text".into(), 0xffff_ffff_c020_1400),
            ],
            functions: vec![
                (".text".into(), 0x0, 0x40, "leaky_alloc".into()),
                (".text".into(), 0x40, 0x20, "leaky_other".into()),
                (".init.text".into(), 0x0, 0x60, "leaky_init".into()),
                (".exit.text".into(), 0x0, 0x30, "leaky_exit".into()),
            ],
        }
    }

    #[test]
    fn bare_addresses_become_functions_of_their_section() {
        let p = placed();
        let f = p.frame(0xffff_ffff_c020_6025).unwrap();
        assert_eq!(
            (f.function.as_str(), f.offset, f.module.as_deref()),
            ("leaky_init", Some(0x25), Some("leaky"))
        );
        let f = p.frame(0xffff_ffff_c020_1045).unwrap();
        assert_eq!((f.function.as_str(), f.offset), ("leaky_other", Some(5)));
        // .exit.text lies above .text: the nearest section wins.
        let f = p.frame(0xffff_ffff_c020_1410).unwrap();
        assert_eq!((f.function.as_str(), f.offset), ("leaky_exit", Some(0x10)));
    }

    #[test]
    fn addresses_outside_every_function_are_not_the_module() {
        let p = placed();
        assert!(p.frame(0xffff_ffff_c020_0fff).is_none());
        assert!(p.frame(0xffff_ffff_c020_6060).is_none());
        assert!(p.frame(0xffff_ffff_8100_0000).is_none());
        assert!(resolve(&[p], 0).is_none());
    }

    #[test]
    fn sections_parse_and_hidden_ones_are_dropped() {
        let s = parse_sections(".text 0xffffffffc0201000\n.data 0x0000000000000000\ngarbage\n");
        assert_eq!(s.len(), 2);
        let p = Placement::new("x", Path::new("/nonexistent.ko"), s).unwrap();
        assert_eq!(p.sections.len(), 1);
        assert!(Placement::new("x", Path::new("/n.ko"), vec![(".text".into(), 0)]).is_none());
    }

    #[test]
    fn a_module_loaded_again_replaces_its_placement() {
        let mut all = Placements::default();
        all.record(placed());
        let mut again = placed();
        again.sections = vec![(".text".into(), 0x1000)];
        all.record(again);
        assert_eq!(all.all().len(), 1);
        assert_eq!(all.all()[0].sections[0].1, 0x1000);
    }
}
