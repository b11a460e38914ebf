//! Who exports a kernel symbol, from the kit's `Module.symvers`, so that an
//! `Unknown symbol` at `insmod` names the module to load or says that this
//! kernel has no such symbol at all.

use std::path::Path;

/// One line of explanation for `Unknown symbol <symbol>`.
pub fn explain(symvers: &Path, symbol: &str) -> String {
    let text = std::fs::read_to_string(symvers).unwrap_or_default();
    // crc, symbol, module path, export kind (and namespace).
    let found = text.lines().find_map(|l| {
        let mut f = l.split('\t');
        let (_crc, name, module, kind) = (f.next()?, f.next()?, f.next()?, f.next()?);
        (name == symbol).then(|| (module.to_string(), kind.to_string()))
    });
    match found {
        None if text.is_empty() => {
            format!("`{symbol}`: this kernel's headers have no Module.symvers to look it up in")
        }
        None => format!("this kernel exports no symbol `{symbol}` (not in its Module.symvers)"),
        Some((module, kind)) if module == "vmlinux" => format!(
            "`{symbol}` is exported by the kernel itself ({kind}){}",
            if kind.ends_with("_GPL") {
                ": a module whose licence is not GPL cannot use it"
            } else {
                ""
            }
        ),
        Some((module, kind)) => {
            let name = module
                .rsplit('/')
                .next()
                .unwrap_or(&module)
                .replace('-', "_");
            format!("`{symbol}` is exported by the kernel's module `{name}` ({module}, {kind}); load it first with a `modprobe` step")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_exporter_or_says_there_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("Module.symvers");
        std::fs::write(
            &f,
            "0x1\txt_register_target\tnet/netfilter/x_tables\tEXPORT_SYMBOL\t\n0x2\tkmalloc_x\tvmlinux\tEXPORT_SYMBOL_GPL\t\n",
        )
        .unwrap();
        let x = explain(&f, "xt_register_target");
        assert!(
            x.contains("module `x_tables` (net/netfilter/x_tables"),
            "{x}"
        );
        let v = explain(&f, "kmalloc_x");
        assert!(v.contains("kernel itself") && v.contains("not GPL"), "{v}");
        let n = explain(&f, "no_such");
        assert!(n.contains("exports no symbol `no_such`"), "{n}");
    }
}
