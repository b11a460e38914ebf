//! KUnit results in a step's kernel lines: the KTAP the kernel prints when
//! a module's suites run (at `insmod`), read into [`CaseResult`]s.
//!
//! The kernel log is not a KTAP document: the module's own `pr_info`s, a
//! crash report or a later module's suites come in between, and a crash
//! cuts a suite short. So the reader follows only the nesting the kernel
//! writes (a subtest's lines are indented deeper than its parent's, its
//! result line is at the parent's depth) and ignores what it cannot place:
//! - a result line counts only inside KTAP (after a `KTAP version`,
//!   `# Subtest:` or plan line, or when it closes a subtest), so a module
//!   printing `ok 1 done` is not a case;
//! - a diagnostic (`# case: EXPECTATION FAILED at f.c:12`) and the lines
//!   continuing it (`Expected ...`, at least as deep as it) explain the
//!   next result at its depth;
//! - a subtest still open when the lines end (the kernel crashed, or the
//!   step ended) is an [`Status::Error`] result that says so, with one more
//!   for the case that was running when its plan promised more; the runner
//!   turns them into crashes when the step saw one.
//!
//! Linux 6.1 prints a module's suite header and cases four spaces deep and
//! the suite's result line at column 0; later kernels add a `KTAP version 1`
//! and `1..N` at column 0. Both read the same here.

use crate::klog::KernelLine;
use crate::outcome::{CaseResult, Status};

/// Deepest nesting kept (suite, case, parameter are three): deeper lines
/// are ignored rather than growing the stack without bound.
const MAX_DEPTH: usize = 8;
/// Results kept from one step's lines; more are dropped.
const MAX_CASES: usize = 10_000;
/// Longest name kept (the kernel's own limit is 256 for a parameter).
const MAX_NAME: usize = 256;
/// Lines kept per diagnostic, continuation lines included.
const MAX_NOTE_LINES: usize = 40;
/// Diagnostics kept for one result.
const MAX_NOTES: usize = 64;

/// The KUnit suites (with their cases) whose KTAP is in `lines`, in the
/// order the kernel ran them.
pub(crate) fn parse(lines: &[KernelLine]) -> Vec<CaseResult> {
    let mut p = Parser::default();
    for l in lines {
        p.line(&l.text);
    }
    p.finish()
}

/// An open (sub)test whose result line has not come yet.
#[derive(Debug, Default)]
struct Node {
    /// Indentation of the node's own lines (its children's results).
    indent: usize,
    /// From `# Subtest: name`.
    name: Option<String>,
    /// From `1..N`.
    planned: Option<u64>,
    cases: Vec<CaseResult>,
    /// Diagnostics since the last result at this depth, each with its
    /// continuation lines.
    notes: Vec<Vec<String>>,
}

impl Node {
    fn at(indent: usize) -> Node {
        Node {
            indent,
            ..Node::default()
        }
    }

    fn is_fresh(&self) -> bool {
        self.name.is_none() && self.planned.is_none() && self.cases.is_empty()
    }
}

#[derive(Debug)]
struct Parser {
    /// `stack[0]` is the log itself (depth 0); it never closes.
    stack: Vec<Node>,
    /// A `KTAP version` or plan at column 0 was seen: results there count.
    root_open: bool,
    /// Where the last diagnostic went (stack index), while lines may still
    /// continue it.
    continuing: Option<usize>,
    kept: usize,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser {
            stack: vec![Node::at(0)],
            root_open: false,
            continuing: None,
            kept: 0,
        }
    }
}

/// What a line of KTAP is.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    Version,
    Subtest(&'a str),
    Plan(Option<u64>),
    Result {
        ok: bool,
        name: &'a str,
        directive: Option<(&'a str, &'a str)>,
    },
    Diagnostic(&'a str),
    Other,
}

fn classify(t: &str) -> Line<'_> {
    if let Some(rest) = t
        .strip_prefix("KTAP version ")
        .or(t.strip_prefix("TAP version "))
    {
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            return Line::Version;
        }
    }
    if let Some(name) = t.strip_prefix("# Subtest:") {
        return Line::Subtest(name.trim());
    }
    if let Some(n) = t.strip_prefix("1..") {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            return Line::Plan(n.parse().ok());
        }
    }
    if let Some(d) = t.strip_prefix('#') {
        return Line::Diagnostic(d.trim());
    }
    let (ok, rest) = if let Some(r) = t.strip_prefix("ok ") {
        (true, r)
    } else if let Some(r) = t.strip_prefix("not ok ") {
        (false, r)
    } else {
        return Line::Other;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !(rest.len() == digits || rest[digits..].starts_with(' ')) {
        return Line::Other;
    }
    let rest = rest[digits..].trim_start();
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    let (name, directive) = match rest.split_once('#') {
        Some((name, d)) => {
            let d = d.trim();
            let (word, why) = d.split_once(char::is_whitespace).unwrap_or((d, ""));
            (name, Some((word, why.trim())))
        }
        None => (rest, None),
    };
    Line::Result {
        ok,
        name: name.trim(),
        directive,
    }
}

impl Parser {
    fn top(&self) -> &Node {
        &self.stack[self.stack.len() - 1]
    }

    fn line(&mut self, text: &str) {
        let trimmed = text.trim_start_matches(' ');
        let indent = text.len() - trimmed.len();
        let trimmed = trimmed.trim_end();
        if trimmed.is_empty() {
            return;
        }
        let kind = classify(trimmed);
        if kind != Line::Other && !matches!(kind, Line::Diagnostic(_)) {
            self.continuing = None;
        }
        match kind {
            Line::Version | Line::Subtest(_) | Line::Plan(_) => self.structure(indent, kind),
            Line::Result {
                ok,
                name,
                directive,
            } => self.result(indent, ok, name, directive),
            Line::Diagnostic(d) => self.diagnostic(indent, d),
            Line::Other => self.other(indent, trimmed),
        }
    }

    /// A header, subtest name or plan: it opens a subtest when deeper than
    /// the open one, belongs to it when as deep, and shows the deeper ones
    /// were cut short when shallower.
    fn structure(&mut self, indent: usize, kind: Line<'_>) {
        while self.top().indent > indent {
            self.close_unfinished();
        }
        if self.top().indent < indent {
            if self.stack.len() > MAX_DEPTH {
                return;
            }
            self.stack.push(Node::at(indent));
        } else if self.stack.len() == 1 {
            // Column 0: the log's own KTAP header (later kernels print
            // one); results at column 0 count from now on.
            if !matches!(kind, Line::Subtest(_)) {
                self.root_open = true;
            }
            return;
        } else {
            // As deep as the open subtest: more of its header, or a new
            // subtest at the same depth after one that never ended.
            let top = self.top();
            let again = match kind {
                Line::Version => !top.is_fresh(),
                Line::Subtest(_) => top.name.is_some() || !top.cases.is_empty(),
                Line::Plan(_) => top.planned.is_some() || !top.cases.is_empty(),
                _ => false,
            };
            if again {
                self.close_unfinished();
                self.stack.push(Node::at(indent));
            }
        }
        let top = self.stack.last_mut().expect("the root never closes");
        match kind {
            Line::Subtest(name) => top.name = Some(clip(name)),
            Line::Plan(n) => top.planned = n,
            _ => {}
        }
    }

    fn result(&mut self, indent: usize, ok: bool, name: &str, directive: Option<(&str, &str)>) {
        let Some(at) = self.stack.iter().rposition(|n| n.indent <= indent) else {
            return;
        };
        if self.stack[at].indent < indent {
            // Between two depths (the text of a crash report's frame):
            // not where the kernel puts a result.
            if at + 1 < self.stack.len() {
                return;
            }
            // Deeper than anything open: only inside KTAP, as a subtest
            // whose header was lost.
            if (self.stack.len() == 1 && !self.root_open) || self.stack.len() > MAX_DEPTH {
                return;
            }
            self.stack.push(Node::at(indent));
        }
        // The subtests deeper than this line end here: the outermost of
        // them is the one this line is the result of.
        let mut closed = None;
        while self.top().indent > indent {
            if let Some(inner) = closed.take() {
                self.attach(unfinished(inner));
            }
            closed = self.stack.pop();
        }
        if closed.is_none() && self.stack.len() == 1 && !self.root_open {
            return;
        }
        let notes = std::mem::take(&mut self.stack.last_mut().expect("root").notes);
        let mut case = CaseResult {
            name: clip(name),
            status: if ok { Status::Pass } else { Status::Fail },
            message: None,
            location: None,
            crash: None,
            cases: Vec::new(),
        };
        if let Some(node) = closed {
            if case.name.is_empty() {
                case.name = node.name.clone().unwrap_or_default();
            }
            case.cases = node.cases;
        }
        match directive {
            Some((word, why)) if word.eq_ignore_ascii_case("SKIP") => {
                case.status = Status::Skip;
                case.message = Some(why.to_string()).filter(|w| !w.is_empty());
            }
            Some((word, why)) if word.eq_ignore_ascii_case("TIMEOUT") && !ok => {
                case.status = Status::Timeout;
                case.message = Some(why.to_string()).filter(|w| !w.is_empty());
            }
            Some((word, why)) if word.eq_ignore_ascii_case("ERROR") && !ok => {
                case.status = Status::Error;
                case.message = Some(why.to_string()).filter(|w| !w.is_empty());
            }
            _ => {}
        }
        if !ok {
            // At column 0 the kernel's other lines mix in (`#PF: ...` of an
            // oops): only the result's own `name: ` diagnostics explain it.
            let only_own = self.stack.len() == 1;
            let (message, location) = explain(&case.name, &notes, only_own);
            case.message = case.message.or(message);
            case.location = location;
        }
        self.attach(case);
    }

    fn diagnostic(&mut self, indent: usize, text: &str) {
        self.continuing = None;
        if is_statistics(text) {
            return;
        }
        // The deepest open node this line is not shallower than; a
        // diagnostic never closes a subtest (6.1 prints a suite's totals
        // at column 0 before its result line).
        let Some(at) = self.stack.iter().rposition(|n| n.indent <= indent) else {
            return;
        };
        let notes = &mut self.stack[at].notes;
        if notes.len() < MAX_NOTES {
            notes.push(vec![clip(text)]);
            self.continuing = Some(at);
        }
    }

    /// A line that is not KTAP: the rest of a multi-line diagnostic when it
    /// is at least as deep as the subtest it is in, else someone else's.
    fn other(&mut self, indent: usize, text: &str) {
        let Some(at) = self.continuing else {
            return;
        };
        let node = &mut self.stack[at];
        if at == 0 || indent < node.indent {
            self.continuing = None;
            return;
        }
        if let Some(note) = node.notes.last_mut() {
            if note.len() < MAX_NOTE_LINES {
                let deeper = " ".repeat(indent - node.indent);
                note.push(clip(&format!("{deeper}{text}")));
            }
        }
    }

    /// Adds a result to the open node, within [`MAX_CASES`].
    fn attach(&mut self, case: CaseResult) {
        let n = count(&case);
        if self.kept + n > MAX_CASES {
            return;
        }
        self.kept += n;
        self.stack.last_mut().expect("root").cases.push(case);
    }

    /// Closes the innermost subtest as one that printed no result line.
    fn close_unfinished(&mut self) {
        if let Some(node) = self.stack.pop() {
            if self.stack.is_empty() {
                self.stack.push(node);
                return;
            }
            self.attach(unfinished(node));
        }
    }

    fn finish(mut self) -> Vec<CaseResult> {
        while self.stack.len() > 1 {
            self.close_unfinished();
        }
        self.stack.pop().map(|n| n.cases).unwrap_or_default()
    }
}

/// The result of a subtest that never printed its own: an error, with one
/// more for the case that was running when the plan promised more (the
/// kernel prints a case's name only with its result).
fn unfinished(node: Node) -> CaseResult {
    let mut cases = node.cases;
    let done = cases.len() as u64;
    let running_one_of_them = cases.last().is_some_and(|c| c.status == Status::Error);
    let message = match node.planned {
        Some(n) if done < n && !running_one_of_them => {
            cases.push(CaseResult {
                name: format!("case {}", done + 1),
                status: Status::Error,
                message: Some(
                    "no result: the kernel log stopped while this case ran (its name comes only with its result)"
                        .into(),
                ),
                location: None,
                crash: None,
                cases: Vec::new(),
            });
            format!("no result: the kernel log stopped after {done} of {n} cases")
        }
        Some(n) => format!("no result: the kernel log stopped after {done} of {n} cases"),
        None => "no result: the kernel log stopped before this finished".to_string(),
    };
    CaseResult {
        name: node.name.unwrap_or_else(|| "(unnamed)".into()),
        status: Status::Error,
        message: Some(message),
        location: None,
        crash: None,
        cases,
    }
}

fn count(c: &CaseResult) -> usize {
    1 + c.cases.iter().map(count).sum::<usize>()
}

/// A failed result's message and `file:line`: the first diagnostic that
/// says where something failed (`EXPECTATION FAILED at f.c:12`, with the
/// lines that continue it), else every diagnostic. The `name: ` prefix
/// KUnit puts on a case's diagnostics is dropped.
fn explain(name: &str, notes: &[Vec<String>], only_own: bool) -> (Option<String>, Option<String>) {
    let own = |l: &str| -> String { own_text(name, l).unwrap_or(l).to_string() };
    let notes: Vec<&Vec<String>> = notes
        .iter()
        .filter(|n| !only_own || n.first().is_some_and(|l| own_text(name, l).is_some()))
        .collect();
    let failing = notes.iter().find_map(|n| {
        let first = own(n.first()?);
        let location = location_in(&first)?;
        let mut text = vec![first];
        text.extend(n[1..].iter().cloned());
        Some((text.join("\n"), location))
    });
    match failing {
        Some((message, location)) => (Some(message), Some(location)),
        None => {
            let all: Vec<String> = notes
                .iter()
                .map(|n| {
                    let mut l = (*n).clone();
                    l[0] = own(&l[0]);
                    l.join("\n")
                })
                .collect();
            (Some(all.join("\n")).filter(|m| !m.is_empty()), None)
        }
    }
}

/// A diagnostic of `name`'s own (`name: text`), without the prefix.
fn own_text<'a>(name: &str, line: &'a str) -> Option<&'a str> {
    line.strip_prefix(name)?.strip_prefix(": ")
}

/// `file:line` from `... FAILED at file:line`.
fn location_in(text: &str) -> Option<String> {
    let (_, at) = text.split_once("FAILED at ")?;
    let at = at.split_whitespace().next()?;
    let (file, line) = at.rsplit_once(':')?;
    let line: u32 = line.parse().ok()?;
    (!file.is_empty() && line > 0).then(|| format!("{file}:{line}"))
}

/// `name: pass:1 fail:0 skip:0 total:1` and `Totals: ...`: counts the
/// results already say.
fn is_statistics(text: &str) -> bool {
    text.split_once(": ")
        .is_some_and(|(_, rest)| rest.starts_with("pass:") && rest.contains(" total:"))
}

/// At most [`MAX_NAME`] characters.
fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_NAME) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests;
