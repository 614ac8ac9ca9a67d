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

    /// The rule's definition: where its error travels back, whose `φ′` gates it, whose
    /// activities multiply it (docs/theory.md §2). This table is the only place a rule is
    /// defined; [`crate::Rule`] follows it for every model.
    pub fn recipe(self) -> Recipe {
        use FeedbackSource::*;
        use TraceSource::{Frozen, Live};
        let (feedback, derivatives, activities) = match self {
            RuleKind::Bp => (LiveWeights, Live, Live),
            RuleKind::AlignZero => (InitialWeights, Frozen, Frozen),
            RuleKind::AlignAda => (InitialWeights, Frozen, Live),
            RuleKind::AlignProp => (InitialWeights, Live, Live),
            RuleKind::Fa => (RandomWeights, Live, Live),
            RuleKind::Dfa => (DirectRandom, Live, Live),
            RuleKind::Readout => (Nowhere, Live, Live),
        };
        Recipe {
            feedback,
            derivatives,
            activities,
        }
    }

    /// Whether the rule reads the network frozen at initialisation (`align-*`).
    pub fn uses_frozen_network(self) -> bool {
        self.recipe().uses_frozen_network()
    }

    /// Whether the rule needs the frozen network's forward pass (its derivatives or activities):
    /// `align-ada` and `align-zero`.
    pub fn uses_frozen_trace(self) -> bool {
        self.recipe().uses_frozen_trace()
    }
}

/// Where a rule's error travels back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FeedbackSource {
    /// Through the network's own current weights (backprop).
    LiveWeights,
    /// Through the weights of the network frozen at initialisation (the Align rules).
    InitialWeights,
    /// Through fixed random matrices shaped like the weights (feedback alignment).
    RandomWeights,
    /// A fixed random projection of the output error straight to each hidden layer (direct
    /// feedback alignment).
    DirectRandom,
    /// Nowhere: only the readout learns.
    Nowhere,
}

/// Whose forward pass a rule reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TraceSource {
    /// The live network's, on the batch.
    Live,
    /// The network's frozen at initialisation, on the same batch.
    Frozen,
}

/// A rule as a recipe: feedback pathway, whose `φ′`, whose activities (see
/// [`RuleKind::recipe`]).
///
/// ```
/// use widealign_rules::{FeedbackSource, RuleKind, TraceSource};
/// let r = RuleKind::AlignAda.recipe();
/// assert_eq!(r.feedback, FeedbackSource::InitialWeights);
/// assert_eq!((r.derivatives, r.activities), (TraceSource::Frozen, TraceSource::Live));
/// assert!(!RuleKind::AlignZero.recipe().reads_live_trace());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Recipe {
    /// Which matrices carry the error back.
    pub feedback: FeedbackSource,
    /// Whose pre-activations give `φ′`.
    pub derivatives: TraceSource,
    /// Whose activities multiply the backward signal in the update.
    pub activities: TraceSource,
}

impl Recipe {
    /// Whether the recipe reads the network frozen at initialisation.
    pub fn uses_frozen_network(self) -> bool {
        self.feedback == FeedbackSource::InitialWeights || self.uses_frozen_trace()
    }

    /// Whether the recipe reads the frozen network's forward pass.
    pub fn uses_frozen_trace(self) -> bool {
        self.derivatives == TraceSource::Frozen || self.activities == TraceSource::Frozen
    }

    /// Whether the recipe reads the frozen network's activities (so a frozen-trace cache must
    /// hold them too).
    pub fn uses_frozen_activities(self) -> bool {
        self.activities == TraceSource::Frozen
    }

    /// Whether the recipe reads the live network's trace at all (Align-zero reads nothing of
    /// the live network but its output error).
    pub fn reads_live_trace(self) -> bool {
        self.derivatives == TraceSource::Live
            || self.activities == TraceSource::Live
            || self.feedback == FeedbackSource::LiveWeights
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

    #[test]
    fn recipes_read_what_the_rules_are_defined_by() {
        use RuleKind::*;
        let frozen_net: Vec<RuleKind> = RuleKind::ALL
            .into_iter()
            .filter(|r| r.uses_frozen_network())
            .collect();
        assert_eq!(frozen_net, [AlignZero, AlignAda, AlignProp]);
        let frozen_trace: Vec<RuleKind> = RuleKind::ALL
            .into_iter()
            .filter(|r| r.uses_frozen_trace())
            .collect();
        assert_eq!(frozen_trace, [AlignZero, AlignAda]);
        let frozen_acts: Vec<RuleKind> = RuleKind::ALL
            .into_iter()
            .filter(|r| r.recipe().uses_frozen_activities())
            .collect();
        assert_eq!(frozen_acts, [AlignZero]);
        let no_live: Vec<RuleKind> = RuleKind::ALL
            .into_iter()
            .filter(|r| !r.recipe().reads_live_trace())
            .collect();
        assert_eq!(no_live, [AlignZero]);
        // every rule is a different recipe
        for a in RuleKind::ALL {
            for b in RuleKind::ALL {
                assert_eq!(a == b, a.recipe() == b.recipe(), "{a} vs {b}");
            }
        }
    }
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
