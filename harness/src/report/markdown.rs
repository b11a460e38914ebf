//! A Markdown summary of a JSON report, for CI pages that render Markdown
//! (GitHub's job summary, a merge-request comment).
//!
//! It reads the JSON report rather than listening to the runner, so a CI
//! step can write it after the run, from the file the run left, even when
//! the run failed or was killed before its own reporters finished another
//! output. It works on `serde_json::Value` with the schema's field names:
//! a report from a newer modvm with extra fields still reads, one with
//! another `schema_version` is refused by name.

use serde_json::Value;
use std::fmt::Write as _;

/// The JSON report's version this reader understands.
const SCHEMA_VERSION: u64 = 1;
/// Longest text kept in one table cell; CI pages cap a summary's size
/// (GitHub at 1 MiB) and a long panic message helps no one in a table.
const CELL_MAX: usize = 300;
/// Rows of passing tests listed before the rest are only counted.
const PASSED_ROWS_MAX: usize = 200;
/// Results inside a test named in its row before the rest are counted.
const CASES_NAMED_MAX: usize = 3;

/// Why a file is not a report this modvm can summarise.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SummaryError {
    #[error("not JSON ({0}); pass the file written by `modvm test --json FILE`")]
    NotJson(String),
    #[error("not a modvm JSON report (no `{0}` field); pass the file written by `modvm test --json FILE`")]
    NotAReport(&'static str),
    #[error("the report has schema_version {0}, this modvm reads {SCHEMA_VERSION}; summarise it with the modvm that wrote it")]
    Version(u64),
}

/// The Markdown for one report's text.
pub fn summary(text: &str) -> Result<String, SummaryError> {
    let report: Value =
        serde_json::from_str(text).map_err(|e| SummaryError::NotJson(e.to_string()))?;
    render(&report)
}

fn render(r: &Value) -> Result<String, SummaryError> {
    let version = r["schema_version"]
        .as_u64()
        .ok_or(SummaryError::NotAReport("schema_version"))?;
    if version != SCHEMA_VERSION {
        return Err(SummaryError::Version(version));
    }
    let tests = r["tests"]
        .as_array()
        .ok_or(SummaryError::NotAReport("tests"))?;
    let s = &r["summary"];
    if !s.is_object() {
        return Err(SummaryError::NotAReport("summary"));
    }
    let count = |k: &str| s[k].as_u64().unwrap_or(0);
    let ok = s["ok"].as_bool().unwrap_or(false);

    let mut out = String::new();
    let mut parts = Vec::new();
    for (key, word) in [
        ("failed", "failed"),
        ("crashed", "crashed"),
        ("timed_out", "timed out"),
        ("errors", "errors"),
        ("not_run", "not run"),
        ("passed", "passed"),
        ("skipped", "skipped"),
    ] {
        if count(key) > 0 {
            parts.push(format!("{} {word}", count(key)));
        }
    }
    if parts.is_empty() {
        parts.push("no tests".into());
    }
    let _ = writeln!(
        out,
        "### {} modvm: {} ({} {})\n",
        if ok { "Passed:" } else { "Failed:" },
        parts.join(", "),
        count("total"),
        if count("total") == 1 { "test" } else { "tests" }
    );
    let mut facts = Vec::new();
    if let Some(k) = r["kernel"].as_str() {
        facts.push(format!("kernel {}", code(k)));
    }
    if let Some(a) = r["accel"].as_str() {
        facts.push(format!("accelerator {}", cell(a)));
    }
    facts.push(format!("{:.1} s", count("duration_ms") as f64 / 1000.0));
    if let Some(v) = r["tool_version"].as_str() {
        facts.push(format!("modvm {}", cell(v)));
    }
    let _ = writeln!(out, "{}\n", facts.join(" · "));
    if r["interrupted"].as_bool() == Some(true) {
        let _ = writeln!(out, "> **Interrupted** before every test had run.\n");
    }
    if let Some(e) = r["error"].as_str() {
        let _ = writeln!(out, "> **Stopped:** {}\n", cell(e));
    }

    let (passed, other): (Vec<&Value>, Vec<&Value>) = tests
        .iter()
        .partition(|t| matches!(t["status"].as_str(), Some("pass" | "skip")));
    if !other.is_empty() {
        let _ = writeln!(
            out,
            "| status | test | kernel | time | why |\n| --- | --- | --- | --- | --- |"
        );
        for t in &other {
            let _ = writeln!(
                out,
                "| **{}** | {} | {} | {} | {} |",
                cell(t["status"].as_str().unwrap_or("?")),
                code(t["name"].as_str().unwrap_or("?")),
                cell(t["kernel"].as_str().unwrap_or("")),
                seconds(&t["duration_ms"]),
                why(t)
            );
        }
        out.push('\n');
    }
    if !passed.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>{} passed or skipped</summary>\n\n| status | test | kernel | time |\n| --- | --- | --- | --- |",
            passed.len()
        );
        for t in passed.iter().take(PASSED_ROWS_MAX) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(t["status"].as_str().unwrap_or("?")),
                code(t["name"].as_str().unwrap_or("?")),
                cell(t["kernel"].as_str().unwrap_or("")),
                seconds(&t["duration_ms"]),
            );
        }
        if passed.len() > PASSED_ROWS_MAX {
            let _ = writeln!(out, "\nand {} more.", passed.len() - PASSED_ROWS_MAX);
        }
        let _ = writeln!(out, "\n</details>\n");
    }
    if let Some(a) = r["artifacts"].as_str() {
        let _ = writeln!(
            out,
            "Logs of every test: {} (the job's artifacts).",
            code(a)
        );
    }
    Ok(out)
}

/// The test's message, and its crash's title and first located frame.
fn why(t: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = t["message"].as_str() {
        parts.push(m.to_string());
    }
    if let Some(title) = t["crash"]["title"].as_str() {
        if !parts.iter().any(|p| p.contains(title)) {
            parts.push(format!("crash: {title}"));
        }
        let located = t["crash"]["frames"].as_array().and_then(|fs| {
            fs.iter().find_map(|f| {
                let file = f["file"].as_str()?;
                let line = f["line"].as_u64()?;
                Some(format!(
                    "{} at {file}:{line}",
                    f["function"].as_str().unwrap_or("?")
                ))
            })
        });
        if let Some(l) = located {
            parts.push(l);
        }
    }
    let mut inner = Vec::new();
    for c in t["cases"].as_array().into_iter().flatten() {
        not_passed(c, "", &mut inner);
    }
    let named = inner.len().min(CASES_NAMED_MAX);
    for c in &inner[..named] {
        if !parts.iter().any(|p| p.contains(c.as_str())) {
            parts.push(c.clone());
        }
    }
    if inner.len() > named {
        parts.push(format!("{} more results inside", inner.len() - named));
    }
    cell(&parts.join("; "))
}

/// The innermost results inside a test that did not pass, as
/// `path.to.case status at file:line`.
fn not_passed(c: &Value, parent: &str, out: &mut Vec<String>) {
    let status = c["status"].as_str().unwrap_or("?");
    if matches!(status, "pass" | "skip" | "not_run") {
        return;
    }
    let name = c["name"].as_str().unwrap_or("?");
    let path = if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    };
    let inner = c["cases"].as_array().map(Vec::as_slice).unwrap_or_default();
    let before = out.len();
    for i in inner {
        not_passed(i, &path, out);
    }
    if out.len() == before {
        let at = c["location"]
            .as_str()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        out.push(format!("{path} {status}{at}"));
    }
}

fn seconds(ms: &Value) -> String {
    ms.as_u64()
        .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
        .unwrap_or_default()
}

/// Text made safe for one table cell: HTML and the table's own syntax
/// escaped, lines joined, control characters shown, long text cut.
fn cell(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == CELL_MAX {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("&#124;"),
            '`' => out.push_str("&#96;"),
            '*' | '_' | '[' | ']' | '\\' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("<br>"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A name shown as code; `<code>` rather than backticks, so a name holding
/// a backtick cannot end the span early.
fn code(text: &str) -> String {
    format!("<code>{}</code>", cell(text).replace('\\', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(tests: Value, ok: bool, extra: Value) -> String {
        let mut r = serde_json::json!({
            "schema_version": 1, "tool": "modvm", "tool_version": "0.1.0",
            "kernel": "debian-6.1-cloud", "accel": "tcg",
            "artifacts": "target/modvm/runs/20261125-101010-1",
            "interrupted": false, "error": null,
            "tests": tests,
            "summary": {"total": 2, "passed": 1, "failed": 1, "crashed": 0, "timed_out": 0,
                        "skipped": 0, "errors": 0, "not_run": 0, "duration_ms": 2500, "ok": ok}
        });
        if let (Some(o), Some(e)) = (r.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        r.to_string()
    }

    fn test(name: &str, status: &str, message: Value, crash: Value) -> Value {
        serde_json::json!({"name": name, "kernel": "debian-6.1-cloud", "status": status,
                           "duration_ms": 1234, "message": message, "crash": crash})
    }

    #[test]
    fn failures_get_a_row_with_their_reason_and_passes_fold_away() {
        let md = summary(&report(
            serde_json::json!([
                test("hello/load", "pass", Value::Null, Value::Null),
                test(
                    "hello/oops",
                    "crash",
                    "step 1 (insmod): kernel crash".into(),
                    serde_json::json!({"title": "BUG: kernel NULL pointer dereference in null_init",
                        "frames": [{"function": "printk", "file": null, "line": null},
                                   {"function": "null_init", "file": "null_init.c", "line": 12}]})
                ),
            ]),
            false,
            Value::Null,
        ))
        .unwrap();
        assert!(
            md.starts_with("### Failed: modvm: 1 failed, 1 passed (2 tests)"),
            "{md}"
        );
        assert!(
            md.contains("kernel <code>debian-6.1-cloud</code> · accelerator tcg · 2.5 s"),
            "{md}"
        );
        assert!(md.contains("| **crash** | <code>hello/oops</code> | debian-6.1-cloud | 1.2 s | step 1 (insmod): kernel crash; crash: BUG: kernel NULL pointer dereference in null\\_init; null\\_init at null\\_init.c:12 |"), "{md}");
        assert!(
            md.contains("<details><summary>1 passed or skipped</summary>"),
            "{md}"
        );
        assert!(md.contains("| pass | <code>hello/load</code> |"), "{md}");
        assert!(md.contains("Logs of every test: <code>target/modvm/runs/20261125-101010-1</code>"));
    }

    #[test]
    fn results_inside_a_failed_test_are_named_with_their_place() {
        let mut t = test(
            "demo/suites",
            "fail",
            "step 1 (insmod demo): KUnit".into(),
            Value::Null,
        );
        t["cases"] = serde_json::json!([
            {"name": "math", "status": "fail", "cases": [
                {"name": "add", "status": "pass", "cases": []},
                {"name": "sub", "status": "fail", "location": "demo.c:26", "cases": []}]},
            {"name": "str", "status": "pass", "cases": []}]);
        let md = summary(&report(serde_json::json!([t]), false, Value::Null)).unwrap();
        assert!(
            md.contains("| step 1 (insmod demo): KUnit; math.sub fail at demo.c:26 |"),
            "{md}"
        );
    }

    #[test]
    fn a_stopped_or_interrupted_run_says_so() {
        let md = summary(&report(
            serde_json::json!([]),
            false,
            serde_json::json!({"error": "kernel profile `x` is unknown", "interrupted": true}),
        ))
        .unwrap();
        assert!(md.contains("> **Interrupted**"), "{md}");
        assert!(
            md.contains("> **Stopped:** kernel profile &#96;x&#96; is unknown"),
            "{md}"
        );
        assert!(!md.contains("<details>"), "{md}");
    }

    #[test]
    fn hostile_text_cannot_break_the_table() {
        let md = summary(&report(
            serde_json::json!([test(
                "a|b`c/<script>",
                "fail",
                "x | y\nz\u{1b}[31m".into(),
                Value::Null
            )]),
            false,
            Value::Null,
        ))
        .unwrap();
        let row = md.lines().find(|l| l.starts_with("| **fail**")).unwrap();
        assert_eq!(row.matches(" | ").count(), 4, "{row}");
        assert!(
            row.contains("<code>a&#124;b&#96;c/&lt;script&gt;</code>"),
            "{row}"
        );
        assert!(row.contains("x &#124; y<br>z\\u{1b}\\[31m"), "{row}");
        let long = "e".repeat(5000);
        let md = summary(&report(
            serde_json::json!([test("t/t", "error", long.into(), Value::Null)]),
            false,
            Value::Null,
        ))
        .unwrap();
        assert!(md.len() < 2000, "a long message is cut: {} bytes", md.len());
    }

    #[test]
    fn many_passes_are_counted_not_listed() {
        let tests: Vec<Value> = (0..250)
            .map(|i| test(&format!("s/t{i}"), "pass", Value::Null, Value::Null))
            .collect();
        let md = summary(&report(Value::Array(tests), true, Value::Null)).unwrap();
        assert!(md.starts_with("### Passed:"), "{md}");
        assert_eq!(md.matches("| pass |").count(), PASSED_ROWS_MAX);
        assert!(md.contains("and 50 more."));
    }

    #[test]
    fn other_files_are_refused_by_name() {
        assert!(matches!(
            summary("<testsuites/>"),
            Err(SummaryError::NotJson(_))
        ));
        assert_eq!(
            summary("{}"),
            Err(SummaryError::NotAReport("schema_version"))
        );
        assert_eq!(
            summary(r#"{"schema_version": 2}"#),
            Err(SummaryError::Version(2))
        );
        assert_eq!(
            summary(r#"{"schema_version": 1, "tests": []}"#),
            Err(SummaryError::NotAReport("summary"))
        );
    }
}
