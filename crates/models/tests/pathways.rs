//! The pathway design: frozen == live reproduces backprop exactly; Align-zero is the gradient of
//! the network linearised at initialisation; rules differ once the network has moved.

use widealign_models::{
    backward_signals, gradients, rnn_backward_signals, rnn_gradients, BiasInit, Feedback, Loss,
    Mlp, MlpSpec, Pathway, Rnn, RnnFeedback, RnnPathway, RnnSpec,
};
use widealign_tensor::{rng::SeedStream, Activation, Mat};

fn data(batch: usize, inputs: usize, outputs: usize) -> (Mat<f64>, Mat<f64>) {
    let s = SeedStream::new(42);
    (
        s.gaussian_matrix("x", batch, inputs, 1.0),
        s.gaussian_matrix("y", batch, outputs, 1.0),
    )
}

#[test]
fn frozen_pathway_equal_to_live_is_backprop_bit_for_bit() {
    let spec = MlpSpec::new(4, vec![6, 5], 3, Activation::Gelu).with_bias_init(BiasInit::Gaussian);
    let live = Mlp::<f64>::new(&spec, 1).unwrap();
    let frozen = live.clone();
    let (x, y) = data(7, 4, 3);
    let t = live.forward(&x).unwrap();
    let t0 = frozen.forward(&x).unwrap();
    let (_, e) = Loss::Mse.evaluate(t.output(), &y).unwrap();
    let bp = gradients(
        &spec,
        &backward_signals(
            &spec,
            &Pathway {
                feedback: Feedback::Weights(&live.weights),
                derivatives: &t,
            },
            &e,
        ),
        &t,
    );
    // align-prop, align-ada and align-zero at step 0
    for (derivs, acts) in [(&t, &t), (&t0, &t), (&t0, &t0)] {
        let g = gradients(
            &spec,
            &backward_signals(
                &spec,
                &Pathway {
                    feedback: Feedback::Weights(&frozen.weights),
                    derivatives: derivs,
                },
                &e,
            ),
            acts,
        );
        assert_eq!(g, bp);
    }
}

#[test]
fn rules_differ_after_the_network_moves() {
    let spec = MlpSpec::new(4, vec![6, 5], 3, Activation::Tanh);
    let mut live = Mlp::<f64>::new(&spec, 1).unwrap();
    let frozen = live.clone();
    let (x, y) = data(7, 4, 3);
    for _ in 0..3 {
        let t = live.forward(&x).unwrap();
        let (_, e) = Loss::Mse.evaluate(t.output(), &y).unwrap();
        let p = Pathway {
            feedback: Feedback::Weights(&live.weights),
            derivatives: &t,
        };
        let g = gradients(&spec, &backward_signals(&spec, &p, &e), &t);
        live.apply_update(&g, 0.5);
    }
    let t = live.forward(&x).unwrap();
    let t0 = frozen.forward(&x).unwrap();
    let (_, e) = Loss::Mse.evaluate(t.output(), &y).unwrap();
    let run = |fb: Feedback<'_, f64>, d: &_, a: &_| {
        gradients(
            &spec,
            &backward_signals(
                &spec,
                &Pathway {
                    feedback: fb,
                    derivatives: d,
                },
                &e,
            ),
            a,
        )
    };
    let bp = run(Feedback::Weights(&live.weights), &t, &t);
    let prop = run(Feedback::Weights(&frozen.weights), &t, &t);
    let zero = run(Feedback::Weights(&frozen.weights), &t0, &t0);
    // the output layer of bp and align-prop sees the same error and activity
    assert_eq!(bp.weights[2], prop.weights[2]);
    assert_ne!(bp.weights[0], prop.weights[0]);
    assert_ne!(prop.weights[0], zero.weights[0]);
}

/// `⟨Align-zero update, v⟩ = ⟨e, J₀ v⟩` with `J₀` the Jacobian of the initial network (by central
/// differences): Align-zero applies the linearised network's gradient to the live error.
#[test]
fn align_zero_is_the_linearised_gradient() {
    let spec = MlpSpec::new(3, vec![5, 4], 2, Activation::Erf).with_bias_init(BiasInit::Gaussian);
    let mut live = Mlp::<f64>::new(&spec, 3).unwrap();
    let frozen = live.clone();
    let (x, y) = data(6, 3, 2);
    // move the live network so its error differs from the initial one
    for w in &mut live.weights {
        w.iter_mut().for_each(|v| *v *= 1.1);
    }
    let t = live.forward(&x).unwrap();
    let t0 = frozen.forward(&x).unwrap();
    let (_, e) = Loss::Mse.evaluate(t.output(), &y).unwrap();
    let g = gradients(
        &spec,
        &backward_signals(
            &spec,
            &Pathway {
                feedback: Feedback::Weights(&frozen.weights),
                derivatives: &t0,
            },
            &e,
        ),
        &t0,
    );
    let s = SeedStream::new(9);
    for dir in 0..3 {
        let v: Vec<Vec<f64>> = frozen
            .params()
            .iter()
            .enumerate()
            .map(|(k, p)| s.gaussian_vec(&format!("v{dir}.{k}"), p.len(), 1.0))
            .collect();
        let shifted = |sign: f64| {
            let mut n = frozen.clone();
            for (p, vk) in n.params_mut().into_iter().zip(&v) {
                p.iter_mut()
                    .zip(vk)
                    .for_each(|(p, d)| *p += sign * 1e-5 * d);
            }
            n.predict(&x).unwrap()
        };
        let jv = (shifted(1.0) - shifted(-1.0)) / 2e-5;
        let lhs: f64 = g
            .as_slices()
            .iter()
            .zip(&v)
            .map(|(gk, vk)| gk.unwrap().iter().zip(vk).map(|(a, b)| a * b).sum::<f64>())
            .sum();
        let rhs = e.dot(&jv);
        assert!(
            (lhs - rhs).abs() < 1e-7 * (1.0 + rhs.abs()),
            "{lhs} vs {rhs}"
        );
    }
}

#[test]
fn rnn_frozen_pathway_equal_to_live_is_bptt() {
    let spec = RnnSpec::new(2, 6, 2, Activation::Relu).with_bias_init(BiasInit::Gaussian);
    let live = Rnn::<f64>::new(&spec, 4).unwrap();
    let frozen = live.clone();
    let s = SeedStream::new(5);
    let xs: Vec<Mat<f64>> = (0..5)
        .map(|t| s.gaussian_matrix(&format!("x{t}"), 3, 2, 1.0))
        .collect();
    let ys: Vec<Mat<f64>> = (0..5)
        .map(|t| s.gaussian_matrix(&format!("y{t}"), 3, 2, 1.0))
        .collect();
    let t = live.forward(&xs).unwrap();
    let t0 = frozen.forward(&xs).unwrap();
    let (_, errs) = Loss::Mse.evaluate_sequence(&t.outputs, &ys).unwrap();
    let run = |w_rec, w_out, d: &_, a: &_| {
        let p = RnnPathway {
            feedback: RnnFeedback::Weights { w_rec, w_out },
            derivatives: d,
        };
        rnn_gradients(&spec, &rnn_backward_signals(&spec, &p, &errs), &errs, a)
    };
    let bp = run(&live.w_rec, &live.w_out, &t, &t);
    assert_eq!(run(&frozen.w_rec, &frozen.w_out, &t0, &t), bp);
    assert_eq!(run(&frozen.w_rec, &frozen.w_out, &t0, &t0), bp);
    assert!(bp.r0.is_some());
}
