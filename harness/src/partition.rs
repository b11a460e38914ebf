//! `--partition K/N`: which share of a run's tests one CI job takes.
//!
//! The selected tests, in the order `modvm list` shows them, are dealt out
//! like cards: the i-th (counting from 0) goes to share `i mod N + 1`. Every
//! job that is given the same specs and filters computes the same deal, so
//! the N jobs together run every test exactly once, and neighbouring tests
//! (often of one module) land in different jobs. A test runs on every kernel
//! of a matrix in the job that holds it.

/// Share `index` of `count` (both from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: usize,
    pub count: usize,
}

/// More shares than this is a typo: CI platforms run tens of jobs, not
/// thousands.
pub const MAX_SHARES: usize = 1000;

impl Partition {
    /// Whether the test at `position` (from 0, in list order) is ours.
    pub fn selects(&self, position: usize) -> bool {
        position % self.count + 1 == self.index
    }

    /// The items of `all` (in list order) that this share takes.
    pub fn take<T>(&self, all: impl IntoIterator<Item = T>) -> Vec<T> {
        all.into_iter()
            .enumerate()
            .filter(|(i, _)| self.selects(*i))
            .map(|(_, t)| t)
            .collect()
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses `K/N` (or nextest's `count:K/N`), with `1 <= K <= N <= 1000`.
pub fn parse(text: &str) -> Result<Partition, String> {
    let usage = format!(
        "`{text}` is not a partition; write K/N with 1 <= K <= N <= {MAX_SHARES}, e.g. 2/4 for the second of four CI jobs"
    );
    let body = text.trim();
    let body = body.strip_prefix("count:").unwrap_or(body);
    let (k, n) = body.split_once('/').ok_or_else(|| usage.clone())?;
    let (Ok(index), Ok(count)) = (k.trim().parse::<usize>(), n.trim().parse::<usize>()) else {
        return Err(usage);
    };
    if index == 0 || count == 0 || index > count || count > MAX_SHARES {
        return Err(usage);
    }
    Ok(Partition { index, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_together_take_everything_exactly_once() {
        let tests: Vec<usize> = (0..11).collect();
        for count in 1..=5 {
            let mut seen: Vec<usize> = (1..=count)
                .flat_map(|index| Partition { index, count }.take(tests.clone()))
                .collect();
            seen.sort();
            assert_eq!(seen, tests, "{count} shares");
        }
        let p = parse("2/4").unwrap();
        assert_eq!(p.take(0..10), vec![1, 5, 9]);
    }

    #[test]
    fn partitions_are_parsed_strictly() {
        assert_eq!(parse("1/2"), Ok(Partition { index: 1, count: 2 }));
        assert_eq!(parse("count:3/3"), Ok(Partition { index: 3, count: 3 }));
        for bad in ["0/2", "3/2", "2", "a/b", "1/0", "1/1001", "-1/2", ""] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("K/N"), "{bad}: {e}");
        }
    }
}
