//! The modvm command lines in a template's scripts, and their check
//! against the real binary's `--help`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Every `modvm …` command in `script`, as words after `modvm` (quotes
/// removed, `$VARS` kept as written). Continuation lines are joined; a
/// command ends at `;`, `|`, `&`, `)` or the line's end.
pub fn invocations(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut found = Vec::new();
    for line in joined.lines() {
        let line = line.split(" #").next().unwrap_or(line);
        if line.trim_start().starts_with('#') {
            continue;
        }
        let words = words(line);
        let mut i = 0;
        while i < words.len() {
            let w = &words[i];
            if w == "modvm" || w.ends_with("/bin/modvm") {
                let tail: Vec<String> = words[i + 1..]
                    .iter()
                    .take_while(|w| {
                        !matches!(w.as_str(), ";" | "|" | "||" | "&&" | "&" | ")" | ">>" | ">")
                    })
                    .cloned()
                    .collect();
                i += tail.len();
                found.push(tail);
            }
            i += 1;
        }
    }
    found
}

/// Shell-ish words: single quotes group and are removed; double quotes are
/// dropped (so a `$(…)` inside them is seen as the command it is); `$(`,
/// `)`, `;`, `|`, `&` and redirections are words of their own.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        if !cur.is_empty() {
            out.push(std::mem::take(cur));
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"') => {}
            (None, '\'') => quote = Some(c),
            (None, '$') if chars.get(i + 1) == Some(&'(') => {
                flush(&mut cur, &mut out);
                out.push("$(".into());
                i += 1;
            }
            (None, ';' | '|' | '&' | ')' | '>' | '(') => {
                flush(&mut cur, &mut out);
                let mut op = c.to_string();
                if matches!(chars.get(i + 1), Some(&n) if n == c) {
                    op.push(c);
                    i += 1;
                }
                out.push(op);
            }
            (None, c) if c.is_whitespace() => flush(&mut cur, &mut out),
            (None, c) => cur.push(c),
        }
        i += 1;
    }
    flush(&mut cur, &mut out);
    out
}

/// The real binary's subcommands and options, read from `--help` once per
/// command path.
pub struct Help<'a> {
    bin: &'a Path,
    pages: HashMap<Vec<String>, String>,
}

impl<'a> Help<'a> {
    pub fn new(bin: &'a Path) -> Help<'a> {
        Help {
            bin,
            pages: HashMap::new(),
        }
    }

    fn page(&mut self, path: &[String]) -> &str {
        let bin = self.bin;
        self.pages.entry(path.to_vec()).or_insert_with(|| {
            let out = Command::new(bin).args(path).arg("--help").output().unwrap();
            assert!(
                out.status.success(),
                "modvm {} --help failed",
                path.join(" ")
            );
            String::from_utf8(out.stdout).unwrap()
        })
    }

    fn subcommands(&mut self, path: &[String]) -> Vec<String> {
        let page = self.page(path).to_string();
        let Some(section) = page.split("Commands:\n").nth(1) else {
            return Vec::new();
        };
        section
            .lines()
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .filter(|c| c != "help")
            .collect()
    }

    /// Checks one command line: its subcommand path exists and every
    /// option it passes is one that command takes. Returns what is wrong.
    pub fn check(&mut self, args: &[String]) -> Result<(), String> {
        let mut path = Vec::new();
        let mut rest = args;
        loop {
            let subs = self.subcommands(&path);
            match rest.first() {
                Some(w) if subs.contains(w) => {
                    path.push(w.clone());
                    rest = &rest[1..];
                }
                Some(w) if !subs.is_empty() && !w.starts_with('-') => {
                    return Err(format!(
                        "`modvm {}` is not a modvm command (commands there: {})",
                        path.iter()
                            .chain([w])
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" "),
                        subs.join(", ")
                    ));
                }
                _ => break,
            }
        }
        if path.is_empty() {
            return Err(format!("`modvm {}` names no command", args.join(" ")));
        }
        let page = self.page(&path).to_string();
        let option_line = regex::Regex::new(r"(?m)^\s+(?:-([A-Za-z]), )?--([a-z0-9-]+)").unwrap();
        let longs: Vec<&str> = option_line
            .captures_iter(&page)
            .map(|c| c.get(2).unwrap().as_str())
            .collect();
        let shorts: Vec<&str> = option_line
            .captures_iter(&page)
            .filter_map(|c| c.get(1).map(|m| m.as_str()))
            .collect();
        for w in rest {
            let known = if let Some(long) = w.strip_prefix("--") {
                long.is_empty() || longs.contains(&long.split('=').next().unwrap())
            } else if let Some(short) = w.strip_prefix('-').filter(|s| s.len() == 1) {
                shorts.contains(&short)
            } else {
                true
            };
            if !known {
                return Err(format!("`modvm {}` has no option {w}", path.join(" ")));
            }
        }
        Ok(())
    }
}

#[test]
fn invocations_are_found_in_shell() {
    let script = "echo \"key=$(modvm kernels key --kernel \"$KERNEL\")\" >>\"$GITHUB_OUTPUT\"\n\
                  modvm test $MODULES --kernel \"$KERNEL\" \\\n  --out \"$OUT\" --json x.json || status=$?\n\
                  # modvm commented --nope\n\
                  if [ -f r ]; then ./bin/modvm summary \"$REPORT\" >>\"$S\"; fi\n";
    let found = invocations(script);
    assert_eq!(
        found,
        vec![
            vec!["kernels", "key", "--kernel", "$KERNEL"],
            vec!["test", "$MODULES", "--kernel", "$KERNEL", "--out", "$OUT", "--json", "x.json"],
            vec!["summary", "$REPORT"],
        ]
    );
}
