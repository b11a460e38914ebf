//! `modvm summary REPORT.json…`: the Markdown summary of JSON reports, for
//! a CI job's summary page (`>> "$GITHUB_STEP_SUMMARY"`).

use super::print_line;
use crate::report::markdown;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct SummaryArgs {
    /// JSON reports written by `modvm test --json FILE`; one section each.
    #[arg(required = true, value_name = "REPORT")]
    pub reports: Vec<PathBuf>,
}

/// Prints one section per report; a file that is not a report stops the
/// command before anything is printed, so a job summary is never half made.
pub fn summary(args: &SummaryArgs) -> Result<()> {
    let mut sections = Vec::new();
    for path in &args.reports {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the report {}", path.display()))?;
        let md = markdown::summary(&text).with_context(|| format!("{}", path.display()))?;
        sections.push(md);
    }
    print_line(sections.join("\n").trim_end())?;
    Ok(())
}
