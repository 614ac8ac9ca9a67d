//! The exact identities of docs/theory.md §2 between the rules, for the MLP, the RNN and the CNN.

use widealign_models::{
    Cnn, CnnReadout, CnnSpec, Grads, Loss, Mlp, MlpSpec, Norm, Padding, Parameterization, Rnn,
    RnnGrads, RnnSpec,
};
use widealign_rules::{MlpRule, Network as _, RnnRule, RuleKind, StepInput};
use widealign_tensor::{rng::SeedStream, Activation, Float, Mat};

const ALIGN: [RuleKind; 3] = [RuleKind::AlignProp, RuleKind::AlignAda, RuleKind::AlignZero];

/// `‖a − b‖ / max(‖a‖, ‖b‖, tiny)` over all entries, in f64.
fn rel_diff<T: Float>(a: &[&[T]], b: &[&[T]]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den_a, mut den_b) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        for (&u, &v) in x.iter().zip(y.iter()) {
            let (u, v) = (u.as_f64(), v.as_f64());
            num += (u - v) * (u - v);
            den_a += u * u;
            den_b += v * v;
        }
    }
    num.sqrt() / f64::max(den_a.max(den_b).sqrt(), 1e-300)
}

fn grads_slices<T: Float>(g: &Grads<T>) -> Vec<&[T]> {
    g.as_slices()
        .into_iter()
        .map(|s| s.unwrap_or(&[]))
        .collect()
}

fn rnn_grads_slices<T: Float>(g: &RnnGrads<T>) -> Vec<&[T]> {
    g.as_slices()
        .into_iter()
        .map(|s| s.unwrap_or(&[]))
        .collect()
}

// ---------- MLP helpers ----------

fn mlp_data<T: Float>(spec: &MlpSpec, batch: usize, seed: u64) -> (Mat<T>, Mat<T>) {
    let s = SeedStream::new(seed).child("data");
    let x = s.gaussian_matrix("x", batch, spec.input_dim, 1.0);
    let y = s.gaussian_matrix("y", batch, spec.output_dim, 1.0);
    (x, y)
}

/// One step: live forward, MSE, the rule's update, plain SGD. Returns the update.
fn mlp_step<T: Float>(
    rule: &mut MlpRule<T>,
    net: &mut Mlp<T>,
    x: &Mat<T>,
    y: &Mat<T>,
    lr: f64,
) -> Grads<T> {
    let live = net.forward(x).unwrap();
    let (_, err) = Loss::Mse.evaluate(live.output(), y).unwrap();
    let step = StepInput {
        x,
        rows: None,
        live: &live,
        err: &err,
    };
    let g = rule.update(net, &step).unwrap().clone();
    net.apply_update(&g, T::cast(lr));
    g
}

fn mlp_specs() -> Vec<MlpSpec> {
    vec![
        MlpSpec::new(5, vec![24, 24], 3, Activation::Relu),
        MlpSpec::new(4, vec![16, 12, 20], 2, Activation::Tanh).with_param(Parameterization::Ntk {
            w_std: 1.5,
            b_std: 0.3,
        }),
        MlpSpec::new(6, vec![32], 4, Activation::Erf)
            .with_param(Parameterization::Standard {
                w_std: 1.2,
                b_std: 0.2,
            })
            .with_bias_init(widealign_models::BiasInit::Gaussian),
    ]
}

#[test]
fn mlp_align_rules_equal_bp_at_step_zero() {
    for spec in mlp_specs() {
        let net = Mlp::<f32>::new(&spec, 11).unwrap();
        let (x, y) = mlp_data::<f32>(&spec, 7, 1);
        let live = net.forward(&x).unwrap();
        let (_, err) = Loss::Mse.evaluate(live.output(), &y).unwrap();
        let step = StepInput {
            x: &x,
            rows: None,
            live: &live,
            err: &err,
        };
        let bp = MlpRule::new(RuleKind::Bp, &net)
            .unwrap()
            .update(&net, &step)
            .unwrap()
            .clone();
        assert!(bp.norm_squared() > 0.0);
        for kind in ALIGN {
            let g = MlpRule::new(kind, &net)
                .unwrap()
                .update(&net, &step)
                .unwrap()
                .clone();
            let d = rel_diff(&grads_slices(&g), &grads_slices(&bp));
            assert!(d <= 1e-6, "{kind} vs bp at step 0: relative difference {d}");
        }
        // ... and not after the network has moved.
        let mut moved = net.clone();
        let mut bp_rule = MlpRule::new(RuleKind::Bp, &moved).unwrap();
        for _ in 0..3 {
            mlp_step(&mut bp_rule, &mut moved, &x, &y, 0.5);
        }
        let live = moved.forward(&x).unwrap();
        let (_, err) = Loss::Mse.evaluate(live.output(), &y).unwrap();
        let step = StepInput {
            x: &x,
            rows: None,
            live: &live,
            err: &err,
        };
        let bp = bp_rule.update(&moved, &step).unwrap().clone();
        for kind in ALIGN {
            let g = MlpRule::new(kind, &moved)
                .unwrap()
                .update(&moved, &step)
                .unwrap()
                .clone();
            let d = rel_diff(&grads_slices(&g), &grads_slices(&bp));
            assert!(d > 1e-4, "{kind} still equals bp after training: {d}");
        }
    }
}

#[test]
fn mlp_align_prop_equals_fa_with_frozen_weights() {
    for spec in mlp_specs() {
        let init = Mlp::<f32>::new(&spec, 5).unwrap();
        let (x, y) = mlp_data::<f32>(&spec, 9, 2);
        let mut a = init.clone();
        let mut b = init.clone();
        let mut prop = MlpRule::new(RuleKind::AlignProp, &a).unwrap();
        let mut fa = MlpRule::fa_with_feedback(&spec, init.weights.clone()).unwrap();
        for step in 0..5 {
            let ga = mlp_step(&mut prop, &mut a, &x, &y, 0.3);
            let gb = mlp_step(&mut fa, &mut b, &x, &y, 0.3);
            let d = rel_diff(&grads_slices(&ga), &grads_slices(&gb));
            assert!(d <= 1e-6, "step {step}: align-prop vs fa(B = W0): {d}");
        }
        let d = rel_diff(&a.params(), &b.params());
        assert!(d <= 1e-6, "trained parameters differ: {d}");
        assert_ne!(a, init, "training moved the network");
    }
}

/// `⟨e, f(θ)⟩` summed over the batch, for the frozen network with one parameter nudged.
fn mlp_pairing(net: &Mlp<f64>, x: &Mat<f64>, e: &Mat<f64>) -> f64 {
    net.predict(x).unwrap().component_mul(e).sum()
}

#[test]
fn mlp_align_zero_is_gradient_of_linearised_network() {
    for spec in [
        MlpSpec::new(3, vec![6, 5], 2, Activation::Tanh),
        MlpSpec::new(4, vec![7], 3, Activation::Erf).with_param(Parameterization::Standard {
            w_std: 1.3,
            b_std: 0.5,
        }),
    ] {
        let init = Mlp::<f64>::new(&spec, 3).unwrap();
        let (x, y) = mlp_data::<f64>(&spec, 5, 4);
        // Move the live network away from initialisation with backprop.
        let mut live_net = init.clone();
        let mut bp = MlpRule::new(RuleKind::Bp, &live_net).unwrap();
        for _ in 0..20 {
            mlp_step(&mut bp, &mut live_net, &x, &y, 0.5);
        }
        assert!(rel_diff(&live_net.params(), &init.params()) > 1e-2);
        // Align-zero's update for the live error of the trained network.
        let live = live_net.forward(&x).unwrap();
        let (_, err) = Loss::Mse.evaluate(live.output(), &y).unwrap();
        let mut zero = MlpRule::new(RuleKind::AlignZero, &live_net).unwrap();
        let g = zero
            .update(
                &live_net,
                &StepInput {
                    x: &x,
                    rows: None,
                    live: &live,
                    err: &err,
                },
            )
            .unwrap()
            .clone();
        // Gradient of θ ↦ ⟨e, f_lin(θ)⟩ with f_lin(θ) = f(θ0) + J(θ0)(θ − θ0) is J(θ0)ᵀ e,
        // whose p-th entry is the central difference of ⟨e, f_lin⟩ along coordinate p
        // (exact for the linear model; f_lin's increment equals f's at θ0 up to O(ε²)).
        let eps = 1e-6;
        let mut fd: Vec<Vec<f64>> = Vec::new();
        let n_params: Vec<usize> = init.params().iter().map(|p| p.len()).collect();
        for (pi, &len) in n_params.iter().enumerate() {
            let mut col = Vec::with_capacity(len);
            for k in 0..len {
                let mut plus = init.clone();
                plus.params_mut()[pi][k] += eps;
                let mut minus = init.clone();
                minus.params_mut()[pi][k] -= eps;
                col.push(
                    (mlp_pairing(&plus, &x, &err) - mlp_pairing(&minus, &x, &err)) / (2.0 * eps),
                );
            }
            fd.push(col);
        }
        let fd_refs: Vec<&[f64]> = fd.iter().map(|v| v.as_slice()).collect();
        let d = rel_diff(&grads_slices(&g), &fd_refs);
        assert!(d < 1e-7, "align-zero vs linearised gradient: {d}");
        // ... which is not the gradient of the live network.
        let g_bp = bp
            .update(
                &live_net,
                &StepInput {
                    x: &x,
                    rows: None,
                    live: &live,
                    err: &err,
                },
            )
            .unwrap()
            .clone();
        assert!(rel_diff(&grads_slices(&g_bp), &fd_refs) > 1e-3);
    }
}

#[test]
fn mlp_frozen_network_is_never_written_and_never_reallocated() {
    let spec = MlpSpec::new(5, vec![20, 20], 3, Activation::Relu);
    let (x, y) = mlp_data::<f32>(&spec, 8, 9);
    for kind in ALIGN {
        let mut net = Mlp::<f32>::new(&spec, 2).unwrap();
        let mut rule = MlpRule::new(kind, &net).unwrap();
        let ptrs: Vec<*const f32> = rule
            .frozen()
            .unwrap()
            .weights
            .iter()
            .map(|w| w.as_ptr())
            .collect();
        for _ in 0..10 {
            mlp_step(&mut rule, &mut net, &x, &y, 0.5);
        }
        let fresh = Mlp::<f32>::new(&spec, 2).unwrap();
        let frozen = rule.frozen().unwrap();
        for (a, b) in frozen.params().iter().zip(fresh.params()) {
            let bits_a: Vec<u32> = a.iter().map(|v| v.to_bits()).collect();
            let bits_b: Vec<u32> = b.iter().map(|v| v.to_bits()).collect();
            assert_eq!(bits_a, bits_b, "{kind}: frozen network changed");
        }
        let after: Vec<*const f32> = frozen.weights.iter().map(|w| w.as_ptr()).collect();
        assert_eq!(ptrs, after, "{kind}: frozen weights were reallocated");
        assert_ne!(net, fresh, "{kind}: the live network trained");
    }
}

#[test]
fn mlp_readout_changes_only_the_last_layer() {
    let spec = MlpSpec::new(5, vec![20, 20], 3, Activation::Relu)
        .with_bias_init(widealign_models::BiasInit::Gaussian);
    let (x, y) = mlp_data::<f32>(&spec, 8, 9);
    let init = Mlp::<f32>::new(&spec, 2).unwrap();
    let mut net = init.clone();
    let mut rule = MlpRule::new(RuleKind::Readout, &net).unwrap();
    for _ in 0..10 {
        mlp_step(&mut rule, &mut net, &x, &y, 0.5);
    }
    let depth = spec.depth();
    for l in 0..depth - 1 {
        assert_eq!(net.weights[l], init.weights[l], "W^{} changed", l + 1);
        assert_eq!(net.biases[l], init.biases[l], "b^{} changed", l + 1);
    }
    assert_ne!(net.weights[depth - 1], init.weights[depth - 1]);
    assert_ne!(net.biases[depth - 1], init.biases[depth - 1]);
}

#[test]
fn mlp_seven_rules_differ_after_a_few_steps() {
    let spec = MlpSpec::new(5, vec![24, 24], 3, Activation::Relu);
    let (x, y) = mlp_data::<f64>(&spec, 10, 3);
    let init = Mlp::<f64>::new(&spec, 4).unwrap();
    let nets: Vec<(RuleKind, Mlp<f64>)> = RuleKind::ALL
        .iter()
        .map(|&kind| {
            let mut net = init.clone();
            let mut rule = MlpRule::new(kind, &net).unwrap();
            for _ in 0..4 {
                mlp_step(&mut rule, &mut net, &x, &y, 0.5);
            }
            (kind, net)
        })
        .collect();
    for (i, (ka, a)) in nets.iter().enumerate() {
        assert_ne!(a, &init, "{ka} did not train");
        for (kb, b) in &nets[i + 1..] {
            let d = rel_diff(&a.params(), &b.params());
            assert!(d > 1e-6, "{ka} and {kb} trained to the same network ({d})");
        }
    }
}

#[test]
fn mlp_feedback_matrices_come_from_their_own_streams() {
    let spec = MlpSpec::new(5, vec![20, 30], 3, Activation::Relu);
    let fa = MlpRule::<f64>::from_spec(RuleKind::Fa, &spec, 1).unwrap();
    let net = Mlp::<f64>::new(&spec, 1).unwrap();
    assert_eq!(fa.feedback().unwrap().len(), 3);
    assert_eq!(fa.feedback().unwrap()[0].shape(), (0, 0));
    for l in 1..3 {
        assert_eq!(fa.feedback().unwrap()[l].shape(), net.weights[l].shape());
        assert_ne!(fa.feedback().unwrap()[l], net.weights[l]);
    }
    let dfa = MlpRule::<f64>::from_spec(RuleKind::Dfa, &spec, 1).unwrap();
    assert_eq!(dfa.feedback().unwrap()[0].shape(), (20, 3));
    assert_eq!(dfa.feedback().unwrap()[1].shape(), (30, 3));
    // Same seed, same matrices; another seed, other matrices.
    let again = MlpRule::<f64>::from_spec(RuleKind::Fa, &spec, 1).unwrap();
    assert_eq!(fa.feedback(), again.feedback());
    let other = MlpRule::<f64>::from_spec(RuleKind::Fa, &spec, 2).unwrap();
    assert_ne!(fa.feedback().unwrap()[1], other.feedback().unwrap()[1]);
    // The DFA scale: entries N(0, s_w²/n_l).
    let big = MlpSpec::new(5, vec![400], 10, Activation::Relu);
    let d = MlpRule::<f64>::from_spec(RuleKind::Dfa, &big, 0).unwrap();
    let m = &d.feedback().unwrap()[0];
    let var = m.iter().map(|v| v * v).sum::<f64>() / m.len() as f64;
    assert!(
        (var * 400.0 - 1.0).abs() < 0.1,
        "variance × n = {}",
        var * 400.0
    );
}

#[test]
fn mlp_cached_frozen_trace_gives_the_same_updates() {
    let spec = MlpSpec::new(5, vec![24, 24], 3, Activation::Relu);
    let s = SeedStream::new(8);
    let x_train: Mat<f32> = s.gaussian_matrix("x", 30, 5, 1.0);
    let rows = [3usize, 17, 0, 29, 8, 8];
    let x = Mat::from_fn(rows.len(), 5, |i, j| x_train[(rows[i], j)]);
    let y: Mat<f32> = s.gaussian_matrix("y", rows.len(), 3, 1.0);
    for kind in [RuleKind::AlignAda, RuleKind::AlignZero] {
        let init = Mlp::<f32>::new(&spec, 6).unwrap();
        let mut plain = MlpRule::new(kind, &init).unwrap();
        let mut cached = MlpRule::new(kind, &init).unwrap();
        let bytes = cached.cache_frozen_trace(&x_train).unwrap();
        // per example: frozen pre-activations of both hidden layers (and activities for
        // align-zero) in f32, plus two f64 input checksums
        let per_row = if kind == RuleKind::AlignZero { 96 } else { 48 };
        assert_eq!(bytes, 30 * (per_row * 4 + 16));
        assert_eq!(bytes, plain.frozen_cache_size(&x_train));
        let (mut a, mut b) = (init.clone(), init.clone());
        for _ in 0..4 {
            let g1 = mlp_step(&mut plain, &mut a, &x, &y, 0.5);
            let live = b.forward(&x).unwrap();
            let (_, err) = Loss::Mse.evaluate(live.output(), &y).unwrap();
            let g2 = cached
                .update(
                    &b,
                    &StepInput {
                        x: &x,
                        rows: Some(&rows),
                        live: &live,
                        err: &err,
                    },
                )
                .unwrap()
                .clone();
            b.apply_update(&g2, 0.5);
            assert_eq!(g1, g2, "{kind}: cached and computed frozen traces disagree");
        }
        // Rows that do not match the inputs are refused.
        let live = b.forward(&x).unwrap();
        let (_, err) = Loss::Mse.evaluate(live.output(), &y).unwrap();
        let wrong = [1usize, 17, 0, 29, 8, 8];
        let step = StepInput {
            x: &x,
            rows: Some(&wrong),
            live: &live,
            err: &err,
        };
        let msg = cached.update(&b, &step).unwrap_err().to_string();
        assert!(msg.contains("cache"), "{msg}");
    }
}

#[test]
fn mlp_shape_errors_are_errors_not_panics() {
    let spec = MlpSpec::new(5, vec![8], 3, Activation::Relu);
    let net = Mlp::<f32>::new(&spec, 0).unwrap();
    let (x, y) = mlp_data::<f32>(&spec, 4, 0);
    let live = net.forward(&x).unwrap();
    let (_, err) = Loss::Mse.evaluate(live.output(), &y).unwrap();
    let bad_err = Mat::<f32>::zeros(4, 2);
    let mut rule = MlpRule::new(RuleKind::Bp, &net).unwrap();
    let msg = rule
        .update(
            &net,
            &StepInput {
                x: &x,
                rows: None,
                live: &live,
                err: &bad_err,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(msg.contains("4 × 3") && msg.contains("4 × 2"), "{msg}");
    let other = Mlp::<f32>::new(&MlpSpec::new(5, vec![9], 3, Activation::Relu), 0).unwrap();
    assert!(rule
        .update(
            &other,
            &StepInput {
                x: &x,
                rows: None,
                live: &live,
                err: &err,
            },
        )
        .is_err());
}

// ---------- RNN ----------

fn rnn_data<T: Float>(
    spec: &RnnSpec,
    batch: usize,
    steps: usize,
    seed: u64,
) -> (Vec<Mat<T>>, Vec<Mat<T>>) {
    let s = SeedStream::new(seed).child("seq");
    let xs = (0..steps)
        .map(|t| s.gaussian_matrix(&format!("x{t}"), batch, spec.input_dim, 1.0))
        .collect();
    let ys = (0..steps)
        .map(|t| s.gaussian_matrix(&format!("y{t}"), batch, spec.output_dim, 0.5))
        .collect();
    (xs, ys)
}

fn rnn_step<T: Float>(
    rule: &mut RnnRule<T>,
    net: &mut Rnn<T>,
    xs: &[Mat<T>],
    ys: &[Mat<T>],
    lr: f64,
) -> RnnGrads<T> {
    let live = net.forward(xs).unwrap();
    let (_, errs) = Loss::Mse.evaluate_sequence(&live.outputs, ys).unwrap();
    let step = StepInput {
        x: xs,
        rows: None,
        live: &live,
        err: errs.as_slice(),
    };
    let g = rule.update(net, &step).unwrap().clone();
    net.apply_update(&g, T::cast(lr));
    g
}

fn rnn_specs() -> Vec<RnnSpec> {
    vec![
        RnnSpec::new(1, 24, 1, Activation::Relu),
        RnnSpec::new(3, 16, 2, Activation::Tanh).with_param(Parameterization::Ntk {
            w_std: 1.2,
            b_std: 0.2,
        }),
        RnnSpec::new(2, 20, 2, Activation::Erf)
            .with_param(Parameterization::Standard {
                w_std: 1.0,
                b_std: 0.1,
            })
            .with_bias_init(widealign_models::BiasInit::Gaussian),
    ]
}

#[test]
fn rnn_align_rules_equal_bp_at_step_zero() {
    for spec in rnn_specs() {
        let mut net = Rnn::<f32>::new(&spec, 1).unwrap();
        let (xs, ys) = rnn_data::<f32>(&spec, 5, 7, 2);
        let live = net.forward(&xs).unwrap();
        let (_, errs) = Loss::Mse.evaluate_sequence(&live.outputs, &ys).unwrap();
        let step = StepInput {
            x: xs.as_slice(),
            rows: None,
            live: &live,
            err: errs.as_slice(),
        };
        let bp = RnnRule::new(RuleKind::Bp, &net)
            .unwrap()
            .update(&net, &step)
            .unwrap()
            .clone();
        assert!(bp.w_in.is_some() && bp.r0.is_some());
        for kind in ALIGN {
            let g = RnnRule::new(kind, &net)
                .unwrap()
                .update(&net, &step)
                .unwrap()
                .clone();
            let d = rel_diff(&rnn_grads_slices(&g), &rnn_grads_slices(&bp));
            assert!(d <= 1e-6, "rnn {kind} vs bp at step 0: {d}");
        }
        // After some steps they part.
        let mut bp_rule = RnnRule::new(RuleKind::Bp, &net).unwrap();
        for _ in 0..5 {
            rnn_step(&mut bp_rule, &mut net, &xs, &ys, 0.1);
        }
        let live = net.forward(&xs).unwrap();
        let (_, errs) = Loss::Mse.evaluate_sequence(&live.outputs, &ys).unwrap();
        let step = StepInput {
            x: xs.as_slice(),
            rows: None,
            live: &live,
            err: errs.as_slice(),
        };
        let bp = bp_rule.update(&net, &step).unwrap().clone();
        for kind in ALIGN {
            let g = RnnRule::new(kind, &net)
                .unwrap()
                .update(&net, &step)
                .unwrap()
                .clone();
            let d = rel_diff(&rnn_grads_slices(&g), &rnn_grads_slices(&bp));
            assert!(d > 1e-5, "rnn {kind} still equals bp after training: {d}");
        }
    }
}

#[test]
fn rnn_align_prop_equals_fa_with_frozen_weights() {
    for spec in rnn_specs() {
        let init = Rnn::<f32>::new(&spec, 4).unwrap();
        let (xs, ys) = rnn_data::<f32>(&spec, 4, 6, 3);
        let (mut a, mut b) = (init.clone(), init.clone());
        let mut prop = RnnRule::new(RuleKind::AlignProp, &a).unwrap();
        let mut fa =
            RnnRule::fa_with_feedback(&spec, (init.w_rec.clone(), init.w_out.clone())).unwrap();
        for step in 0..5 {
            let ga = rnn_step(&mut prop, &mut a, &xs, &ys, 0.1);
            let gb = rnn_step(&mut fa, &mut b, &xs, &ys, 0.1);
            let d = rel_diff(&rnn_grads_slices(&ga), &rnn_grads_slices(&gb));
            assert!(d <= 1e-6, "rnn step {step}: align-prop vs fa(B = W0): {d}");
        }
        assert!(rel_diff(&a.params(), &b.params()) <= 1e-6);
        assert_ne!(a, init);
    }
}

#[test]
fn rnn_align_zero_is_gradient_of_linearised_network() {
    for spec in [
        RnnSpec::new(2, 6, 2, Activation::Tanh),
        RnnSpec::new(1, 5, 1, Activation::Erf).with_param(Parameterization::Standard {
            w_std: 1.1,
            b_std: 0.3,
        }),
    ] {
        let init = Rnn::<f64>::new(&spec, 8).unwrap();
        let (xs, ys) = rnn_data::<f64>(&spec, 3, 5, 1);
        let mut live_net = init.clone();
        let mut bp = RnnRule::new(RuleKind::Bp, &live_net).unwrap();
        for _ in 0..30 {
            rnn_step(&mut bp, &mut live_net, &xs, &ys, 0.2);
        }
        assert!(rel_diff(&live_net.params(), &init.params()) > 1e-2);
        let live = live_net.forward(&xs).unwrap();
        let (_, errs) = Loss::Mse.evaluate_sequence(&live.outputs, &ys).unwrap();
        let step = StepInput {
            x: xs.as_slice(),
            rows: None,
            live: &live,
            err: errs.as_slice(),
        };
        let g = RnnRule::new(RuleKind::AlignZero, &live_net)
            .unwrap()
            .update(&live_net, &step)
            .unwrap()
            .clone();
        let pairing = |net: &Rnn<f64>| -> f64 {
            net.predict(&xs)
                .unwrap()
                .iter()
                .zip(&errs)
                .map(|(y, e)| y.component_mul(e).sum())
                .sum()
        };
        let eps = 1e-6;
        let lens: Vec<usize> = init.params().iter().map(|p| p.len()).collect();
        let mut fd: Vec<Vec<f64>> = Vec::new();
        for (pi, &len) in lens.iter().enumerate() {
            fd.push(
                (0..len)
                    .map(|k| {
                        let mut plus = init.clone();
                        plus.params_mut()[pi][k] += eps;
                        let mut minus = init.clone();
                        minus.params_mut()[pi][k] -= eps;
                        (pairing(&plus) - pairing(&minus)) / (2.0 * eps)
                    })
                    .collect(),
            );
        }
        let fd_refs: Vec<&[f64]> = fd.iter().map(|v| v.as_slice()).collect();
        let d = rel_diff(&rnn_grads_slices(&g), &fd_refs);
        assert!(d < 1e-7, "rnn align-zero vs linearised gradient: {d}");
        let g_bp = bp.update(&live_net, &step).unwrap().clone();
        assert!(rel_diff(&rnn_grads_slices(&g_bp), &fd_refs) > 1e-3);
    }
}

#[test]
fn rnn_frozen_unchanged_and_readout_only_touches_readout() {
    let spec = RnnSpec::new(1, 16, 1, Activation::Relu)
        .with_bias_init(widealign_models::BiasInit::Gaussian);
    let (xs, ys) = rnn_data::<f32>(&spec, 4, 8, 5);
    let fresh = Rnn::<f32>::new(&spec, 3).unwrap();
    for kind in ALIGN {
        let mut net = fresh.clone();
        let mut rule = RnnRule::new(kind, &net).unwrap();
        let ptr = rule.frozen().unwrap().w_rec.as_ptr();
        for _ in 0..6 {
            rnn_step(&mut rule, &mut net, &xs, &ys, 0.1);
        }
        let frozen = rule.frozen().unwrap();
        for (a, b) in frozen.params().iter().zip(fresh.params()) {
            assert!(a.iter().zip(b).all(|(u, v)| u.to_bits() == v.to_bits()));
        }
        assert_eq!(frozen.w_rec.as_ptr(), ptr);
        assert_ne!(net, fresh);
    }
    let mut net = fresh.clone();
    let mut rule = RnnRule::new(RuleKind::Readout, &net).unwrap();
    for _ in 0..6 {
        rnn_step(&mut rule, &mut net, &xs, &ys, 0.1);
    }
    assert_eq!(net.w_in, fresh.w_in);
    assert_eq!(net.w_rec, fresh.w_rec);
    assert_eq!(net.b, fresh.b);
    assert_eq!(net.r0, fresh.r0);
    assert_ne!(net.w_out, fresh.w_out);
    assert_ne!(net.b_out, fresh.b_out);
}

#[test]
fn rnn_seven_rules_differ_after_a_few_steps() {
    let spec = RnnSpec::new(2, 16, 2, Activation::Tanh);
    let (xs, ys) = rnn_data::<f64>(&spec, 4, 6, 7);
    let init = Rnn::<f64>::new(&spec, 2).unwrap();
    let nets: Vec<(RuleKind, Rnn<f64>)> = RuleKind::ALL
        .iter()
        .map(|&kind| {
            let mut net = init.clone();
            let mut rule = RnnRule::new(kind, &net).unwrap();
            for _ in 0..4 {
                rnn_step(&mut rule, &mut net, &xs, &ys, 0.2);
            }
            (kind, net)
        })
        .collect();
    for (i, (ka, a)) in nets.iter().enumerate() {
        assert_ne!(a, &init, "{ka} did not train");
        for (kb, b) in &nets[i + 1..] {
            let d = rel_diff(&a.params(), &b.params());
            assert!(
                d > 1e-6,
                "rnn {ka} and {kb} trained to the same network ({d})"
            );
        }
    }
}

#[test]
fn rnn_dfa_has_no_signal_through_time() {
    // DFA's D_t depends only on E_t: zeroing every error but the last leaves only D_T.
    let spec = RnnSpec::new(1, 12, 1, Activation::Tanh);
    let net = Rnn::<f64>::new(&spec, 0).unwrap();
    let (xs, _) = rnn_data::<f64>(&spec, 3, 5, 0);
    let live = net.forward(&xs).unwrap();
    let mut errs: Vec<Mat<f64>> = (0..5).map(|_| Mat::zeros(3, 1)).collect();
    errs[4] = Mat::from_element(3, 1, 1.0);
    let step = StepInput {
        x: xs.as_slice(),
        rows: None,
        live: &live,
        err: errs.as_slice(),
    };
    let g_dfa = RnnRule::new(RuleKind::Dfa, &net)
        .unwrap()
        .update(&net, &step)
        .unwrap()
        .clone();
    let g_fa = RnnRule::new(RuleKind::Fa, &net)
        .unwrap()
        .update(&net, &step)
        .unwrap()
        .clone();
    // r_0 only receives signal through time: zero for DFA, non-zero for FA.
    assert!(g_dfa.r0.as_ref().unwrap().iter().all(|&v| v == 0.0));
    assert!(g_fa.r0.as_ref().unwrap().iter().any(|&v| v != 0.0));
}

#[test]
fn rnn_cached_frozen_trace_gives_the_same_updates() {
    let spec = RnnSpec::new(2, 12, 1, Activation::Relu);
    let (xs_train, _) = rnn_data::<f32>(&spec, 20, 6, 4);
    let rows = [3usize, 19, 0, 7, 7];
    let xs: Vec<Mat<f32>> = xs_train
        .iter()
        .map(|x| Mat::from_fn(rows.len(), 2, |i, j| x[(rows[i], j)]))
        .collect();
    let (_, ys) = rnn_data::<f32>(&spec, rows.len(), 6, 5);
    for kind in [RuleKind::AlignAda, RuleKind::AlignZero] {
        let init = Rnn::<f32>::new(&spec, 2).unwrap();
        let mut plain = RnnRule::new(kind, &init).unwrap();
        let mut cached = RnnRule::new(kind, &init).unwrap();
        let bytes = cached.cache_frozen_trace(&xs_train).unwrap();
        assert_eq!(bytes, plain.frozen_cache_size(&xs_train));
        assert_eq!(bytes, cached.cache_bytes());
        let sets = if kind == RuleKind::AlignZero { 2 } else { 1 };
        assert_eq!(bytes, 20 * (sets * 6 * 12 * 4 + 16));
        let (mut a, mut b) = (init.clone(), init.clone());
        for _ in 0..4 {
            let g1 = rnn_step(&mut plain, &mut a, &xs, &ys, 0.1);
            let live = b.forward(&xs).unwrap();
            let (_, errs) = Loss::Mse.evaluate_sequence(&live.outputs, &ys).unwrap();
            let step = StepInput {
                x: xs.as_slice(),
                rows: Some(&rows),
                live: &live,
                err: errs.as_slice(),
            };
            let g2 = cached.update(&b, &step).unwrap().clone();
            b.apply_update(&g2, 0.1);
            assert_eq!(
                g1, g2,
                "rnn {kind}: cached and computed frozen traces disagree"
            );
        }
        let live = b.forward(&xs).unwrap();
        let (_, errs) = Loss::Mse.evaluate_sequence(&live.outputs, &ys).unwrap();
        let wrong = [4usize, 19, 0, 7, 7];
        let step = StepInput {
            x: xs.as_slice(),
            rows: Some(&wrong),
            live: &live,
            err: errs.as_slice(),
        };
        let msg = cached.update(&b, &step).unwrap_err().to_string();
        assert!(msg.contains("cache"), "{msg}");
    }
}

#[test]
fn mlp_fused_sgd_step_is_bit_identical_to_update_then_apply() {
    let spec = MlpSpec::new(5, vec![24, 20], 3, Activation::Relu);
    let s = SeedStream::new(12);
    let x_train: Mat<f32> = s.gaussian_matrix("x", 16, 5, 1.0);
    let rows = [2usize, 9, 15, 0, 4, 4, 11];
    let x = Mat::from_fn(rows.len(), 5, |i, j| x_train[(rows[i], j)]);
    let y: Mat<f32> = s.gaussian_matrix("y", rows.len(), 3, 1.0);
    for kind in RuleKind::ALL {
        for use_cache in [false, true] {
            let init = Mlp::<f32>::new(&spec, 3).unwrap();
            let (mut a, mut b) = (init.clone(), init.clone());
            let mut ra = MlpRule::new(kind, &a).unwrap();
            let mut rb = MlpRule::new(kind, &b).unwrap();
            if use_cache {
                rb.cache_frozen_trace(&x_train).unwrap();
            }
            for _ in 0..4 {
                mlp_step(&mut ra, &mut a, &x, &y, 0.7);
                let live = b.forward(&x).unwrap();
                let (_, err) = Loss::Mse.evaluate(live.output(), &y).unwrap();
                let step = StepInput {
                    x: &x,
                    rows: Some(&rows),
                    live: &live,
                    err: &err,
                };
                rb.sgd_step(&mut b, &step, 0.7).unwrap();
            }
            assert_ne!(a, init, "{kind}");
            for (p, q) in a.params().iter().zip(b.params()) {
                assert!(
                    p.iter().zip(q).all(|(u, v)| u.to_bits() == v.to_bits()),
                    "{kind} (cache {use_cache}): fused step differs"
                );
            }
        }
    }
}

// ---------- Written once against the Network trait, run for every model ----------

/// For any model: `sgd_step` is bit-identical to `update` + `apply_update` for every rule;
/// Align-zero's update needs nothing of the live network (`update_from_frozen` equals `update`
/// after the live network has moved away from the frozen one), and rules that read the live
/// network refuse `update_from_frozen`.
fn generic_rule_checks<M: widealign_rules::Network>(
    init: &M,
    x: &M::Input,
    error: impl Fn(&M::Trace) -> Box<M::Error>,
) {
    use widealign_rules::Rule;
    let lr = <M::Scalar as Float>::cast(0.05);
    for kind in RuleKind::ALL {
        let (mut a, mut b) = (init.clone(), init.clone());
        let mut ra = Rule::new(kind, init).unwrap();
        let mut rb = Rule::new(kind, init).unwrap();
        for _ in 0..3 {
            let mut ta = M::Trace::default();
            a.forward_into(x, &mut ta).unwrap();
            let ea = error(&ta);
            let step = StepInput {
                x,
                rows: None,
                live: &ta,
                err: &*ea,
            };
            let g = ra.update(&a, &step).unwrap().clone();
            a.apply_update(&g, lr);
            let mut tb = M::Trace::default();
            b.forward_into(x, &mut tb).unwrap();
            let eb = error(&tb);
            let step = StepInput {
                x,
                rows: None,
                live: &tb,
                err: &*eb,
            };
            rb.sgd_step(&mut b, &step, lr).unwrap();
            assert!(
                a == b,
                "{kind} on {}: sgd_step differs from update",
                M::NAME
            );
        }
        // the live network has moved: Align-zero still reads only the frozen one
        let mut t = M::Trace::default();
        a.forward_into(x, &mut t).unwrap();
        let e = error(&t);
        let step = StepInput {
            x,
            rows: None,
            live: &t,
            err: &*e,
        };
        let with_live = ra.update(&a, &step).unwrap().clone();
        let frozen_only = ra.update_from_frozen(x, None, &e);
        if kind == RuleKind::AlignZero {
            assert_eq!(frozen_only.unwrap(), &with_live, "{}", M::NAME);
        } else {
            assert!(
                frozen_only.is_err(),
                "{kind} must refuse update_from_frozen"
            );
        }
    }
}

/// One step of `rule` on `net` through the trait: live forward, the error, the update, SGD.
fn generic_step<M: widealign_rules::Network>(
    rule: &mut widealign_rules::Rule<M>,
    net: &mut M,
    x: &M::Input,
    error: &impl Fn(&M::Trace) -> Box<M::Error>,
    lr: f64,
) -> M::Grads {
    let mut live = M::Trace::default();
    net.forward_into(x, &mut live).unwrap();
    let err = error(&live);
    let step = StepInput {
        x,
        rows: None,
        live: &live,
        err: &*err,
    };
    let g = rule.update(net, &step).unwrap().clone();
    net.apply_update(&g, <M::Scalar as Float>::cast(lr));
    g
}

fn generic_grads<M: widealign_rules::Network>(g: &M::Grads) -> Vec<&[M::Scalar]> {
    M::grad_slices(g)
        .into_iter()
        .map(|s| s.unwrap_or(&[]))
        .collect()
}

/// The identities of docs/theory.md §2 for any model, in f64: every Align rule equals backprop
/// at step 0 and no longer after backprop has moved the network; Align-prop equals feedback
/// alignment whose fixed matrices are the initial weights (`initial_feedback`); the frozen
/// network is never written; the readout rule trains only the readout (the last two tensors).
fn generic_identities<M: widealign_rules::Network<Scalar = f64>>(
    init: &M,
    x: &M::Input,
    error: impl Fn(&M::Trace) -> Box<M::Error>,
    initial_feedback: M::FixedFeedback,
) {
    use widealign_rules::Rule;
    let name = M::NAME;
    // Align rules = bp at step 0 ...
    let mut live = M::Trace::default();
    init.forward_into(x, &mut live).unwrap();
    let err = error(&live);
    let step = StepInput {
        x,
        rows: None,
        live: &live,
        err: &*err,
    };
    let bp = Rule::new(RuleKind::Bp, init)
        .unwrap()
        .update(init, &step)
        .unwrap()
        .clone();
    assert!(generic_grads::<M>(&bp)
        .iter()
        .any(|g| g.iter().any(|&v| v != 0.0)));
    for kind in ALIGN {
        let g = Rule::new(kind, init)
            .unwrap()
            .update(init, &step)
            .unwrap()
            .clone();
        let d = rel_diff(&generic_grads::<M>(&g), &generic_grads::<M>(&bp));
        assert!(
            d <= 1e-12,
            "{name}: {kind} vs bp at step 0: relative difference {d}"
        );
    }
    // ... and not after backprop has moved the network.
    let mut moved = init.clone();
    let mut bp_rule = Rule::new(RuleKind::Bp, init).unwrap();
    for _ in 0..3 {
        generic_step(&mut bp_rule, &mut moved, x, &error, 0.5);
    }
    let mut live = M::Trace::default();
    moved.forward_into(x, &mut live).unwrap();
    let err = error(&live);
    let step = StepInput {
        x,
        rows: None,
        live: &live,
        err: &*err,
    };
    let bp = bp_rule.update(&moved, &step).unwrap().clone();
    for kind in ALIGN {
        let g = Rule::new(kind, init)
            .unwrap()
            .update(&moved, &step)
            .unwrap()
            .clone();
        let d = rel_diff(&generic_grads::<M>(&g), &generic_grads::<M>(&bp));
        assert!(
            d > 1e-4,
            "{name}: {kind} still equals bp after training: {d}"
        );
    }
    // Align-prop = FA with B = W_0, step by step.
    let (mut a, mut b) = (init.clone(), init.clone());
    let mut prop = Rule::new(RuleKind::AlignProp, init).unwrap();
    let mut fa = Rule::<M>::fa_with_feedback(init.spec(), initial_feedback).unwrap();
    for k in 0..4 {
        let ga = generic_step(&mut prop, &mut a, x, &error, 0.3);
        let gb = generic_step(&mut fa, &mut b, x, &error, 0.3);
        let d = rel_diff(&generic_grads::<M>(&ga), &generic_grads::<M>(&gb));
        assert!(d <= 1e-12, "{name} step {k}: align-prop vs fa(B = W0): {d}");
    }
    assert!(&a != init, "{name}: align-prop did not train");
    // The frozen network is never written.
    for kind in ALIGN {
        let mut net = init.clone();
        let mut rule = Rule::new(kind, init).unwrap();
        for _ in 0..4 {
            generic_step(&mut rule, &mut net, x, &error, 0.5);
        }
        let fresh = M::from_seed(init.spec(), init.seed()).unwrap();
        assert!(
            rule.frozen().unwrap() == &fresh,
            "{name}: {kind} wrote the frozen network"
        );
        assert!(net != fresh, "{name}: {kind} did not train");
    }
    // The readout rule trains the readout's weight and bias only.
    let mut net = init.clone();
    let mut rule = Rule::new(RuleKind::Readout, init).unwrap();
    for _ in 0..3 {
        generic_step(&mut rule, &mut net, x, &error, 0.5);
    }
    let (after, before) = (net.params(), init.params());
    let n = after.len();
    for (k, (p, q)) in after.iter().zip(&before).enumerate() {
        assert_eq!(p == q, k < n - 2, "{name}: readout rule, tensor {k}");
    }
}

/// The CNN architectures the identities run on: SAME/GAP, VALID/flatten with a 2×2 kernel,
/// stride 2 with batch norm, and the standard parameterisation with batch norm and flatten.
fn cnn_specs() -> Vec<CnnSpec> {
    let base = CnnSpec::new([6, 5, 2], vec![5, 4], 3, Activation::Tanh)
        .with_bias_init(widealign_models::BiasInit::Gaussian);
    vec![
        base.clone(),
        base.clone()
            .with_kernel(2)
            .with_padding(Padding::Valid)
            .with_readout(CnnReadout::Flatten),
        base.clone().with_stride(2).with_norm(Norm::Batch),
        base.with_activation(Activation::Relu)
            .with_norm(Norm::Batch)
            .with_readout(CnnReadout::Flatten)
            .with_param(Parameterization::Standard {
                w_std: 1.2,
                b_std: 0.2,
            }),
    ]
}

#[test]
fn cnn_satisfies_the_identities_of_every_rule() {
    for spec in cnn_specs() {
        let net = Cnn::<f64>::new(&spec, 3).unwrap();
        let s = SeedStream::new(4);
        let x: Mat<f64> = s.gaussian_matrix("x", 5, spec.input_dim(), 1.0);
        let y: Mat<f64> = s.gaussian_matrix("y", 5, 3, 1.0);
        let error = |t: &widealign_models::CnnTrace<f64>| {
            Box::new(Loss::Mse.evaluate(t.output(), &y).unwrap().1)
        };
        generic_identities(&net, &x, error, net.weights.clone());
    }
}

#[test]
fn mlp_identities_through_the_generic_checks() {
    for spec in mlp_specs() {
        let net = Mlp::<f64>::new(&spec, 3).unwrap();
        let (x, y) = mlp_data::<f64>(&spec, 6, 5);
        let error = |t: &widealign_models::Trace<f64>| {
            Box::new(Loss::Mse.evaluate(t.output(), &y).unwrap().1)
        };
        generic_identities(&net, &x, error, net.weights.clone());
    }
}

#[test]
fn cnn_cached_frozen_trace_gives_the_same_updates() {
    let s = SeedStream::new(8);
    for spec in cnn_specs() {
        let x_train: Mat<f32> = s.gaussian_matrix("x", 20, spec.input_dim(), 1.0);
        let rows = [3usize, 17, 0, 19, 8, 8];
        let x = Mat::from_fn(rows.len(), spec.input_dim(), |i, j| x_train[(rows[i], j)]);
        let y: Mat<f32> = s.gaussian_matrix("y", rows.len(), 3, 1.0);
        for kind in [RuleKind::AlignAda, RuleKind::AlignZero] {
            let init = Cnn::<f32>::new(&spec, 6).unwrap();
            let mut plain = widealign_rules::Rule::new(kind, &init).unwrap();
            let mut cached = widealign_rules::Rule::new(kind, &init).unwrap();
            let bytes = cached.cache_frozen_trace(&x_train).unwrap();
            assert_eq!(bytes, plain.frozen_cache_size(&x_train));
            if spec.norm == Norm::Batch {
                // a batch-normalised trace depends on the whole batch: nothing is cached
                assert_eq!(bytes, 0);
            } else {
                let maps: usize = (1..=2).map(|l| spec.map_len(l)).sum();
                let per_row = if kind == RuleKind::AlignZero {
                    2 * maps
                } else {
                    maps
                };
                assert_eq!(bytes, 20 * (per_row * 4 + 16));
            }
            let (mut a, mut b) = (init.clone(), init.clone());
            for _ in 0..3 {
                let live = a.forward(&x).unwrap();
                let (_, err) = Loss::Mse.evaluate(live.output(), &y).unwrap();
                let step = StepInput {
                    x: &x,
                    rows: None,
                    live: &live,
                    err: &err,
                };
                let g1 = plain.update(&a, &step).unwrap().clone();
                a.apply_update(&g1, 0.5);
                let live = b.forward(&x).unwrap();
                let (_, err) = Loss::Mse.evaluate(live.output(), &y).unwrap();
                let step = StepInput {
                    x: &x,
                    rows: Some(&rows),
                    live: &live,
                    err: &err,
                };
                let g2 = cached.update(&b, &step).unwrap().clone();
                b.apply_update(&g2, 0.5);
                assert_eq!(g1, g2, "{kind}: cached and computed frozen traces disagree");
            }
        }
    }
}

#[test]
fn every_rule_written_once_works_for_every_model() {
    let spec = MlpSpec::new(4, vec![16, 12], 3, Activation::Tanh);
    let net = Mlp::<f64>::new(&spec, 5).unwrap();
    let (x, y) = mlp_data::<f64>(&spec, 6, 2);
    generic_rule_checks(&net, &x, |t: &widealign_models::Trace<f64>| {
        Box::new(Loss::Mse.evaluate(t.output(), &y).unwrap().1)
    });
    let rspec = RnnSpec::new(2, 10, 1, Activation::Tanh);
    let rnet = Rnn::<f64>::new(&rspec, 5).unwrap();
    let (xs, ys) = rnn_data::<f64>(&rspec, 4, 5, 3);
    generic_rule_checks(
        &rnet,
        xs.as_slice(),
        |t: &widealign_models::RnnTrace<f64>| {
            Loss::Mse
                .evaluate_sequence(&t.outputs, &ys)
                .unwrap()
                .1
                .into_boxed_slice()
        },
    );
    for spec in cnn_specs() {
        let cnet = Cnn::<f64>::new(&spec, 5).unwrap();
        let s = SeedStream::new(6);
        let x: Mat<f64> = s.gaussian_matrix("x", 4, spec.input_dim(), 1.0);
        let y: Mat<f64> = s.gaussian_matrix("y", 4, 3, 1.0);
        generic_rule_checks(&cnet, &x, |t: &widealign_models::CnnTrace<f64>| {
            Box::new(Loss::Mse.evaluate(t.output(), &y).unwrap().1)
        });
    }
}
