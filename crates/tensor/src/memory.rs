//! Peak-memory estimates checked against the machine's available memory, so that a request
//! that cannot fit (say `--width 10000000`, a 400 TB weight matrix) is refused with a message
//! instead of aborting in the allocator.
//!
//! An [`Estimate`] is a list of named parts in bytes (kept as `f64`, so products of huge flags
//! never overflow); [`Estimate::check`] compares the total with `MemAvailable` of
//! `/proc/meminfo` ([`available_bytes`]) and returns a [`TooBig`] naming the estimate, its
//! largest part and the available memory. Where `/proc/meminfo` cannot be read, nothing is
//! refused.
//!
//! ```
//! use widealign_tensor::memory::Estimate;
//! let mut e = Estimate::new("train (width 10000000)");
//! e.add("weights", 4.0 * 1e7 * 1e7);
//! e.add("traces", 1e9);
//! let err = e.check_against(16 << 30).unwrap_err();
//! assert!(err.to_string().contains("400.0 TB"), "{err}");
//! assert!(e.check_against(1 << 50).is_ok());
//! ```

/// Named parts of a peak-memory estimate, in bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    what: String,
    parts: Vec<(String, f64)>,
}

/// A request whose estimate exceeds the available memory.
#[derive(Clone, Debug, PartialEq)]
pub struct TooBig {
    /// What was estimated, e.g. `train (mlp, width 10000000, depth 2)`.
    pub what: String,
    /// Estimated peak bytes.
    pub needed: f64,
    /// The largest part: name and bytes.
    pub largest: (String, f64),
    /// Available bytes (`MemAvailable`).
    pub available: u64,
}

impl std::fmt::Display for TooBig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} needs about {} of memory (largest part: {}, {}), but only {} is available (MemAvailable in /proc/meminfo)",
            self.what,
            human_bytes(self.needed),
            self.largest.0,
            human_bytes(self.largest.1),
            human_bytes(self.available as f64)
        )
    }
}

impl std::error::Error for TooBig {}

/// `bytes` with a decimal unit, e.g. `400.0 TB`.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Estimate {
    /// An empty estimate of `what` (named in the refusal message).
    pub fn new(what: impl Into<String>) -> Self {
        Estimate {
            what: what.into(),
            parts: Vec::new(),
        }
    }

    /// Adds a part of `bytes` bytes.
    pub fn add(&mut self, name: impl Into<String>, bytes: f64) -> &mut Self {
        self.parts.push((name.into(), bytes.max(0.0)));
        self
    }

    /// The parts so far.
    pub fn parts(&self) -> &[(String, f64)] {
        &self.parts
    }

    /// Total estimated bytes.
    pub fn total(&self) -> f64 {
        self.parts.iter().map(|(_, b)| b).sum()
    }

    /// Checks the estimate against `available` bytes.
    ///
    /// # Errors
    /// [`TooBig`] when the total exceeds `available`.
    pub fn check_against(&self, available: u64) -> Result<(), TooBig> {
        let needed = self.total();
        if needed <= available as f64 {
            return Ok(());
        }
        let largest = self
            .parts
            .iter()
            .cloned()
            .fold((String::new(), -1.0), |a, b| if b.1 > a.1 { b } else { a });
        Err(TooBig {
            what: self.what.clone(),
            needed,
            largest,
            available,
        })
    }

    /// Checks the estimate against this machine's available memory ([`available_bytes`]);
    /// passes when that cannot be read.
    ///
    /// # Errors
    /// [`TooBig`] when the total exceeds it.
    pub fn check(&self) -> Result<(), TooBig> {
        match available_bytes() {
            Some(a) => self.check_against(a),
            None => Ok(()),
        }
    }
}

/// `MemAvailable` of `/proc/meminfo` in bytes (`None` where the file or the line is missing).
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut it = line.split_whitespace().skip(1);
    let n: u64 = it.next()?.parse().ok()?;
    let unit = match it.next() {
        Some("kB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    n.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_parsed_in_bytes() {
        let t = "MemTotal:       24684000 kB\nMemFree:         1 kB\nMemAvailable:   21000000 kB\n";
        assert_eq!(parse_mem_available(t), Some(21_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: x kB\n"), None);
    }

    #[test]
    fn refusals_name_the_estimate_its_largest_part_and_the_memory() {
        let mut e = Estimate::new("ntk (1000000 inputs)");
        e.add("kernel matrices", 1.6e13).add("inputs", 8e8);
        let err = e.check_against(20_000_000_000).unwrap_err().to_string();
        assert_eq!(
            err,
            "ntk (1000000 inputs) needs about 16.0 TB of memory (largest part: kernel matrices, 16.0 TB), but only 20.0 GB is available (MemAvailable in /proc/meminfo)"
        );
        assert!(e.check_against(u64::MAX).is_ok());
        assert_eq!(human_bytes(999.0), "999 B");
        assert_eq!(human_bytes(4e14), "400.0 TB");
    }
}
