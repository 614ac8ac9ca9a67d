//! Optimisers over a list of parameter tensors.
//!
//! For each tensor `θ` with gradient `g` (tensors whose gradient is `None` are left alone):
//!
//! * [`OptimizerKind::Sgd`]: `θ ← θ − lr·g` (the reference optimiser).
//! * [`OptimizerKind::Adam`] (bias-corrected, Kingma & Ba): with the tensor's own step count `t`,
//!   `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)`,
//!   `θ ← θ − lr·m̂/(√v̂ + ε)`.
//!
//! Tensors are matched by position: use the stable orders of [`crate::Mlp::params_mut`] /
//! [`crate::Grads::as_slices`] and [`crate::Rnn::params_mut`] / [`crate::RnnGrads::as_slices`]
//! (or [`Optimizer::step_network`] for any [`crate::Network`]). Adam's moments are allocated on a
//! tensor's first update; a tensor that never receives a gradient (readout-only training) never
//! gets state. Updates are elementwise, so results do not depend on the thread count.
//!
//! ```
//! use widealign_models::{Optimizer, OptimizerKind};
//! let mut w = vec![1.0f64, -1.0];
//! let mut opt = Optimizer::new(OptimizerKind::adam());
//! opt.step(vec![w.as_mut_slice()], vec![Some(&[0.5, -2.0][..])], 0.1);
//! // the first bias-corrected Adam step moves every coordinate by ≈ lr·sign(g)
//! assert!((w[0] - 0.9).abs() < 1e-6 && (w[1] + 0.9).abs() < 1e-6);
//! ```

use rayon::prelude::*;
use widealign_tensor::{elementwise, Float};

use crate::{ModelError, Network};

/// Elements per parallel chunk (fixed, so results do not depend on the thread count).
const CHUNK: usize = 1 << 15;

/// Which update rule an [`Optimizer`] applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// Plain gradient descent `θ ← θ − lr·g`.
    Sgd,
    /// Adam with bias correction.
    Adam {
        /// Decay of the first moment `β₁` (usually 0.9).
        beta1: f64,
        /// Decay of the second moment `β₂` (usually 0.999).
        beta2: f64,
        /// `ε` added to `√v̂` (usually 1e-8).
        eps: f64,
    },
}

impl OptimizerKind {
    /// Adam with the usual constants `β₁ = 0.9`, `β₂ = 0.999`, `ε = 1e-8`.
    pub fn adam() -> Self {
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// `"sgd"` or `"adam"`.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam { .. } => "adam",
        }
    }

    /// Checks Adam's constants: `0 ≤ β < 1` and `ε > 0`, all finite.
    ///
    /// # Errors
    /// [`ModelError::InvalidSpec`] naming the field.
    pub fn validate(self) -> Result<(), ModelError> {
        if let OptimizerKind::Adam { beta1, beta2, eps } = self {
            for (field, b) in [("beta1", beta1), ("beta2", beta2)] {
                if !(0.0..1.0).contains(&b) {
                    return Err(ModelError::InvalidSpec {
                        field: field.into(),
                        reason: format!("must be in [0, 1), got {b}"),
                    });
                }
            }
            if !(eps.is_finite() && eps > 0.0) {
                return Err(ModelError::InvalidSpec {
                    field: "eps".into(),
                    reason: format!("must be finite and positive, got {eps}"),
                });
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for OptimizerKind {
    type Err = ModelError;
    /// `"sgd"` or `"adam"` (default constants).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sgd" => Ok(OptimizerKind::Sgd),
            "adam" => Ok(OptimizerKind::adam()),
            other => Err(ModelError::InvalidSpec {
                field: "optimizer".into(),
                reason: format!("unknown optimizer '{other}' (expected sgd or adam)"),
            }),
        }
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor's Adam state for checkpoints: step count `t`, first moment `m`, second moment `v`.
pub type MomentsView<'a, T> = (u64, &'a [T], &'a [T]);

/// [`MomentsView`] owned (e.g. read back from a checkpoint).
pub type MomentsOwned<T> = (u64, Vec<T>, Vec<T>);

/// Adam's per-tensor state.
#[derive(Clone, Debug, PartialEq)]
struct Moments<T> {
    m: Vec<T>,
    v: Vec<T>,
    t: u64,
}

/// An optimiser with its state, one slot per parameter tensor (matched by position).
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer<T: Float> {
    kind: OptimizerKind,
    state: Vec<Option<Moments<T>>>,
}

impl<T: Float> Optimizer<T> {
    /// A fresh optimiser (no state yet).
    pub fn new(kind: OptimizerKind) -> Self {
        Optimizer {
            kind,
            state: Vec::new(),
        }
    }

    /// The update rule.
    pub fn kind(&self) -> OptimizerKind {
        self.kind
    }

    /// Forgets Adam's moments and step counts.
    pub fn reset(&mut self) {
        self.state.clear();
    }

    /// Adam's state per tensor slot, for checkpoints: `Some((t, m, v))` (step count, first and
    /// second moments) for every tensor updated at least once, `None` otherwise (and for SGD,
    /// which keeps no state). Slots beyond the last updated tensor may be missing.
    pub fn moments(&self) -> Vec<Option<MomentsView<'_, T>>> {
        self.state
            .iter()
            .map(|s| s.as_ref().map(|s| (s.t, s.m.as_slice(), s.v.as_slice())))
            .collect()
    }

    /// Restores the state [`Optimizer::moments`] returned (e.g. read back from a checkpoint),
    /// so the next step continues bit for bit.
    ///
    /// # Errors
    /// [`ModelError::InvalidSpec`] (field `optimizer`) when a slot's `m` and `v` differ in
    /// length or state is given for plain SGD.
    pub fn restore_moments(
        &mut self,
        state: Vec<Option<MomentsOwned<T>>>,
    ) -> Result<(), ModelError> {
        let bad = |reason: String| ModelError::InvalidSpec {
            field: "optimizer".into(),
            reason,
        };
        if self.kind == OptimizerKind::Sgd && state.iter().any(Option::is_some) {
            return Err(bad("plain SGD keeps no moments".into()));
        }
        let mut out = Vec::with_capacity(state.len());
        for (k, s) in state.into_iter().enumerate() {
            out.push(match s {
                Some((t, m, v)) if m.len() == v.len() => Some(Moments { m, v, t }),
                Some((_, m, v)) => {
                    return Err(bad(format!(
                        "tensor {k}: first moment has {} values, second {}",
                        m.len(),
                        v.len()
                    )))
                }
                None => None,
            });
        }
        self.state = out;
        Ok(())
    }

    /// One update of every tensor whose gradient is `Some` (formulas in the module docs).
    ///
    /// # Panics
    /// If `params` and `grads` differ in length, a gradient's length differs from its tensor's,
    /// or a tensor changed length since the previous step (programming errors).
    pub fn step(&mut self, params: Vec<&mut [T]>, grads: Vec<Option<&[T]>>, lr: T) {
        assert_eq!(
            params.len(),
            grads.len(),
            "Optimizer::step: {} tensors, {} gradients",
            params.len(),
            grads.len()
        );
        if self.state.len() < params.len() {
            self.state.resize_with(params.len(), || None);
        }
        for (k, (p, g)) in params.into_iter().zip(grads).enumerate() {
            let Some(g) = g else { continue };
            match self.kind {
                OptimizerKind::Sgd => elementwise::axpy(-lr, g, p),
                OptimizerKind::Adam { beta1, beta2, eps } => {
                    assert_eq!(p.len(), g.len(), "Optimizer::step: tensor {k} length");
                    let st = self.state[k].get_or_insert_with(|| Moments {
                        m: vec![T::zero(); p.len()],
                        v: vec![T::zero(); p.len()],
                        t: 0,
                    });
                    assert_eq!(
                        st.m.len(),
                        p.len(),
                        "Optimizer::step: tensor {k} changed size"
                    );
                    st.t += 1;
                    let t = st.t as i32;
                    let c1 = T::cast(1.0 / (1.0 - beta1.powi(t)));
                    let c2 = T::cast(1.0 / (1.0 - beta2.powi(t)));
                    let (b1, b2, e) = (T::cast(beta1), T::cast(beta2), T::cast(eps));
                    let (one_b1, one_b2) = (T::one() - b1, T::one() - b2);
                    let update = |p: &mut [T], m: &mut [T], v: &mut [T], g: &[T]| {
                        for i in 0..p.len() {
                            let gi = g[i];
                            m[i] = b1 * m[i] + one_b1 * gi;
                            v[i] = b2 * v[i] + one_b2 * gi * gi;
                            let mh = m[i] * c1;
                            let vh = v[i] * c2;
                            p[i] -= lr * mh / (vh.sqrt() + e);
                        }
                    };
                    if p.len() > CHUNK {
                        p.par_chunks_mut(CHUNK)
                            .zip(st.m.par_chunks_mut(CHUNK))
                            .zip(st.v.par_chunks_mut(CHUNK))
                            .zip(g.par_chunks(CHUNK))
                            .for_each(|(((p, m), v), g)| update(p, m, v, g));
                    } else {
                        update(p, &mut st.m, &mut st.v, g);
                    }
                }
            }
        }
    }

    /// [`Optimizer::step`] over a network's parameters (in the order of
    /// [`Network::params_mut`]).
    pub fn step_network<M: Network<Scalar = T>>(&mut self, net: &mut M, grads: &M::Grads, lr: T) {
        self.step(net.params_mut(), M::grad_slices(grads), lr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_matches_scalar_reference() {
        let (b1, b2, eps, lr) = (0.9, 0.999, 1e-8, 0.01);
        let gs = [0.3, -1.2, 0.7, 0.0, 2.5];
        let mut w = vec![0.5f64; CHUNK + 3];
        let mut opt = Optimizer::new(OptimizerKind::Adam {
            beta1: b1,
            beta2: b2,
            eps,
        });
        let (mut m, mut v, mut x) = (0.0f64, 0.0f64, 0.5f64);
        for (t, &g) in gs.iter().enumerate() {
            let grad = vec![g; w.len()];
            opt.step(vec![w.as_mut_slice()], vec![Some(&grad)], lr);
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let t = (t + 1) as i32;
            x -= lr * (m / (1.0 - b1.powi(t))) / ((v / (1.0 - b2.powi(t))).sqrt() + eps);
        }
        assert!(
            w.iter().all(|&wi| (wi - x).abs() < 1e-12),
            "{} vs {x}",
            w[0]
        );
    }

    #[test]
    fn restored_moments_continue_bit_for_bit() {
        let grads = [[0.3f32, -1.0], [2.0, 0.5], [-0.7, 0.1]];
        let mut w = vec![1.0f32, -1.0];
        let mut opt = Optimizer::new(OptimizerKind::adam());
        opt.step(vec![w.as_mut_slice()], vec![Some(&grads[0][..])], 0.1);
        let saved: Vec<_> = opt
            .moments()
            .into_iter()
            .map(|s| s.map(|(t, m, v)| (t, m.to_vec(), v.to_vec())))
            .collect();
        let mut w2 = w.clone();
        let mut fresh = Optimizer::new(OptimizerKind::adam());
        fresh.restore_moments(saved).unwrap();
        for g in &grads[1..] {
            opt.step(vec![w.as_mut_slice()], vec![Some(&g[..])], 0.1);
            fresh.step(vec![w2.as_mut_slice()], vec![Some(&g[..])], 0.1);
        }
        assert_eq!(w, w2);
        assert_eq!(opt, fresh);
        let mut sgd = Optimizer::<f32>::new(OptimizerKind::Sgd);
        assert!(sgd
            .restore_moments(vec![Some((1, vec![0.0], vec![0.0]))])
            .is_err());
        assert!(fresh
            .restore_moments(vec![Some((1, vec![0.0], vec![]))])
            .is_err());
    }

    #[test]
    fn none_gradients_leave_tensors_alone() {
        for kind in [OptimizerKind::Sgd, OptimizerKind::adam()] {
            let mut a = vec![1.0f32; 3];
            let mut b = vec![1.0f32; 2];
            let mut opt = Optimizer::new(kind);
            opt.step(
                vec![a.as_mut_slice(), b.as_mut_slice()],
                vec![None, Some(&[1.0, 1.0][..])],
                0.5,
            );
            assert_eq!(a, vec![1.0; 3]);
            assert!(b.iter().all(|&x| x < 1.0));
        }
    }

    #[test]
    fn parse_and_validate() {
        assert_eq!("sgd".parse::<OptimizerKind>().unwrap(), OptimizerKind::Sgd);
        assert_eq!(
            "adam".parse::<OptimizerKind>().unwrap(),
            OptimizerKind::adam()
        );
        assert!("rmsprop"
            .parse::<OptimizerKind>()
            .unwrap_err()
            .to_string()
            .contains("rmsprop"));
        let bad = OptimizerKind::Adam {
            beta1: 1.0,
            beta2: 0.9,
            eps: 1e-8,
        };
        assert!(bad.validate().unwrap_err().to_string().contains("beta1"));
        assert!(OptimizerKind::adam().validate().is_ok());
    }
}
