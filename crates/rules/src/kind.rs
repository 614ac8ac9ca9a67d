//! The seven credit-assignment rules by name.
//!
//! ```
//! use widealign_rules::RuleKind;
//! let r: RuleKind = "align-zero".parse().unwrap();
//! assert_eq!(r, RuleKind::AlignZero);
//! assert_eq!(r.to_string(), "align-zero");
//! assert!("backprop2".parse::<RuleKind>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use crate::RulesError;

/// Which backward signal and which input activity a rule uses (docs/theory.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// Backpropagation: live weights, live derivatives, live activities.
    Bp,
    /// Align-zero: frozen initial weights, frozen derivatives and frozen activities.
    AlignZero,
    /// Align-ada: frozen initial weights and frozen derivatives, live activities.
    AlignAda,
    /// Align-prop: frozen initial weights, live derivatives, live activities.
    AlignProp,
    /// Feedback alignment: fixed random feedback matrices `B` shaped like `W`.
    Fa,
    /// Direct feedback alignment: fixed random projections `D^l` of the output error.
    Dfa,
    /// Only the readout layer learns (exact gradient).
    Readout,
}

impl RuleKind {
    /// Every rule, in the order reports and `widealign reproduce` list them: bp, then the Align
    /// rules from the most frozen (align-zero) to the least (align-prop), fa, dfa, readout.
    pub const ALL: [RuleKind; 7] = [
        RuleKind::Bp,
        RuleKind::AlignZero,
        RuleKind::AlignAda,
        RuleKind::AlignProp,
        RuleKind::Fa,
        RuleKind::Dfa,
        RuleKind::Readout,
    ];

    /// The command-line name: `bp`, `align-zero`, `align-ada`, `align-prop`, `fa`, `dfa`, `readout`.
    pub fn name(self) -> &'static str {
        match self {
            RuleKind::Bp => "bp",
            RuleKind::AlignZero => "align-zero",
            RuleKind::AlignAda => "align-ada",
            RuleKind::AlignProp => "align-prop",
            RuleKind::Fa => "fa",
            RuleKind::Dfa => "dfa",
            RuleKind::Readout => "readout",
        }
    }

    /// Whether the rule reads the network frozen at initialisation (`align-*`).
    pub fn uses_frozen_network(self) -> bool {
        matches!(
            self,
            RuleKind::AlignZero | RuleKind::AlignAda | RuleKind::AlignProp
        )
    }

    /// Whether the rule needs the frozen network's forward pass (its derivatives or activities):
    /// `align-ada` and `align-zero`.
    pub fn uses_frozen_trace(self) -> bool {
        matches!(self, RuleKind::AlignZero | RuleKind::AlignAda)
    }
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RuleKind {
    type Err = RulesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuleKind::ALL
            .iter()
            .copied()
            .find(|r| r.name() == s)
            .ok_or_else(|| RulesError::UnknownName {
                what: "rule",
                got: s.to_string(),
                expected: RuleKind::ALL.map(RuleKind::name).join(", "),
            })
    }
}

impl serde::Serialize for RuleKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for RuleKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in RuleKind::ALL {
            assert_eq!(r.name().parse::<RuleKind>().unwrap(), r);
            assert_eq!(format!("{r}"), r.name());
        }
        let err = "Align-Zero".parse::<RuleKind>().unwrap_err().to_string();
        assert!(
            err.contains("Align-Zero") && err.contains("align-zero"),
            "{err}"
        );
    }
}
