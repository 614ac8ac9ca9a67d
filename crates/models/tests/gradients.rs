//! Backprop, BPTT and the CNN's backward pass against central finite differences in f64, over
//! random small networks.

use proptest::prelude::*;
use widealign_models::{
    backward_signals, gradients, rnn_backward_signals, rnn_gradients, BiasInit, Cnn, CnnReadout,
    CnnSpec, Feedback, FeedbackPath, Loss, Mlp, MlpSpec, Network, Norm, Padding, Parameterization,
    Pathway, Rnn, RnnFeedback, RnnPathway, RnnSpec,
};
use widealign_tensor::{rng::SeedStream, Activation, Mat};

const STEP: f64 = 1e-5;

/// Central difference agrees with the analytic gradient: absolute error small relative to the
/// scale of the gradient entries (FD truncation is O(STEP²)), plus the difference's own rounding
/// floor, about `ε·|L|/STEP` for a loss of size `|L|` — without it, a network whose gradients are
/// all ~1e-9 (a saturated or dead one) fails on rounding alone.
fn close(fd: f64, g: f64, scale: f64, loss: f64) -> bool {
    let rounding = 100.0 * f64::EPSILON * loss.abs().max(1.0) / STEP;
    (fd - g).abs() <= 1e-6 * (scale + fd.abs().max(g.abs())) + rounding
}

fn activation() -> impl Strategy<Value = Activation> {
    prop::sample::select(Activation::ALL.to_vec())
}

fn param() -> impl Strategy<Value = Parameterization> {
    (0.5f64..2.0, 0.0f64..1.0, any::<bool>()).prop_map(|(w_std, b_std, ntk)| {
        if ntk {
            Parameterization::Ntk { w_std, b_std }
        } else {
            Parameterization::Standard { w_std, b_std }
        }
    })
}

fn bias_init() -> impl Strategy<Value = BiasInit> {
    prop::sample::select(vec![BiasInit::Zero, BiasInit::Gaussian])
}

/// ReLU has a kink at 0: finite differences are meaningless when a pre-activation sits near it.
fn far_from_kinks(act: Activation, pres: &[&Mat<f64>]) -> bool {
    act != Activation::Relu || pres.iter().all(|h| h.iter().all(|v| v.abs() > 1e-3))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn mlp_backprop_matches_finite_differences(
        input in 1usize..=8,
        hidden in prop::collection::vec(1usize..=8, 0..=3),
        output in 1usize..=8,
        batch in 1usize..=4,
        act in activation(),
        param in param(),
        bias in bias_init(),
        seed in 0u64..1000,
        loss in prop::sample::select(vec![Loss::Mse, Loss::CrossEntropy]),
    ) {
        let spec = MlpSpec::new(input, hidden, output, act).with_param(param).with_bias_init(bias);
        // zero-initialised biases are included: their gradient (factor s_b) is checked at zero
        let net = Mlp::<f64>::new(&spec, seed).unwrap();
        let s = SeedStream::new(seed).child("data");
        let x: Mat<f64> = s.gaussian_matrix("x", batch, input, 1.0);
        let y: Mat<f64> = s.gaussian_matrix("y", batch, output, 1.0);
        let trace = net.forward(&x).unwrap();
        let hidden_pre: Vec<&Mat<f64>> = trace.pre[..trace.pre.len() - 1].iter().collect();
        prop_assume!(far_from_kinks(act, &hidden_pre));
        let (_, err) = loss.evaluate(trace.output(), &y).unwrap();
        let pathway = Pathway { feedback: Feedback::Weights(&net.weights), derivatives: &trace };
        let grads = gradients(&spec, &backward_signals(&spec, &pathway, &err), &trace);
        let analytic: Vec<Vec<f64>> =
            grads.as_slices().into_iter().map(|g| g.unwrap().to_vec()).collect();
        let scale = analytic.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
        let eval = |n: &Mlp<f64>| loss.evaluate(&n.predict(&x).unwrap(), &y).unwrap().0;
        for (k, g) in analytic.iter().enumerate() {
            for i in 0..g.len() {
                let mut plus = net.clone();
                plus.params_mut()[k][i] += STEP;
                let mut minus = net.clone();
                minus.params_mut()[k][i] -= STEP;
                let fd = (eval(&plus) - eval(&minus)) / (2.0 * STEP);
                prop_assert!(close(fd, g[i], scale, eval(&net)),
                    "{spec:?}: tensor {k} entry {i}: fd {fd} vs analytic {}", g[i]);
            }
        }
    }

    #[test]
    fn rnn_bptt_matches_finite_differences(
        input in 1usize..=3,
        width in 1usize..=8,
        output in 1usize..=3,
        steps in 1usize..=5,
        batch in 1usize..=3,
        act in activation(),
        param in param(),
        bias in bias_init(),
        random_r0 in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let spec = RnnSpec::new(input, width, output, act).with_param(param).with_bias_init(bias);
        let mut net = Rnn::<f64>::new(&spec, seed).unwrap();
        if random_r0 {
            net.r0 = SeedStream::new(seed).gaussian_vec("r0", width, 0.5);
        }
        let s = SeedStream::new(seed).child("data");
        let xs: Vec<Mat<f64>> =
            (0..steps).map(|t| s.gaussian_matrix(&format!("x{t}"), batch, input, 1.0)).collect();
        let ys: Vec<Mat<f64>> =
            (0..steps).map(|t| s.gaussian_matrix(&format!("y{t}"), batch, output, 1.0)).collect();
        let trace = net.forward(&xs).unwrap();
        prop_assume!(far_from_kinks(act, &trace.pre.iter().collect::<Vec<_>>()));
        let (_, errs) = Loss::Mse.evaluate_sequence(&trace.outputs, &ys).unwrap();
        let pathway = RnnPathway {
            feedback: RnnFeedback::Weights { w_rec: &net.w_rec, w_out: &net.w_out },
            derivatives: &trace,
        };
        let grads = rnn_gradients(&spec, &rnn_backward_signals(&spec, &pathway, &errs), &errs, &trace);
        let analytic: Vec<Vec<f64>> =
            grads.as_slices().into_iter().map(|g| g.unwrap().to_vec()).collect();
        let scale = analytic.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
        let eval = |n: &Rnn<f64>| Loss::Mse.evaluate_sequence(&n.predict(&xs).unwrap(), &ys).unwrap().0;
        // order: w_in, w_rec, b, w_out, b_out, r0 — r0 is checked like every other tensor
        for (k, g) in analytic.iter().enumerate() {
            for i in 0..g.len() {
                let mut plus = net.clone();
                plus.params_mut()[k][i] += STEP;
                let mut minus = net.clone();
                minus.params_mut()[k][i] -= STEP;
                let fd = (eval(&plus) - eval(&minus)) / (2.0 * STEP);
                prop_assert!(close(fd, g[i], scale, eval(&net)),
                    "{spec:?} T={steps}: tensor {k} entry {i}: fd {fd} vs analytic {}", g[i]);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn cnn_backprop_matches_finite_differences(
        h in 2usize..=6,
        w in 2usize..=6,
        c in 1usize..=3,
        channels in prop::collection::vec(1usize..=4, 1..=3),
        kernel in 1usize..=3,
        stride in 1usize..=2,
        valid in any::<bool>(),
        flatten in any::<bool>(),
        batch_norm in any::<bool>(),
        output in 1usize..=3,
        batch in 2usize..=3,
        act in activation(),
        param in param(),
        bias in bias_init(),
        seed in 0u64..1000,
    ) {
        let spec = CnnSpec::new([h, w, c], channels, output, act)
            .with_kernel(kernel)
            .with_stride(stride)
            .with_padding(if valid { Padding::Valid } else { Padding::Same })
            .with_readout(if flatten { CnnReadout::Flatten } else { CnnReadout::Gap })
            .with_norm(if batch_norm { Norm::Batch } else { Norm::None })
            .with_param(param)
            .with_bias_init(bias);
        prop_assume!(spec.validate().is_ok());
        let net = Cnn::<f64>::new(&spec, seed).unwrap();
        let s = SeedStream::new(seed).child("data");
        let x: Mat<f64> = s.gaussian_matrix("x", batch, spec.input_dim(), 1.0);
        let y: Mat<f64> = s.gaussian_matrix("y", batch, output, 1.0);
        let trace = net.forward(&x).unwrap();
        let gates: Vec<&Mat<f64>> =
            if batch_norm { trace.norm.iter().collect() } else { trace.pre[..trace.act.len()].iter().collect() };
        prop_assume!(far_from_kinks(act, &gates));
        // a feature whose batch variance is near ε makes the loss too curved for a step of 1e-5
        prop_assume!(trace.inv_std.iter().flatten().all(|&v| v < 10.0));
        let (_, err) = Loss::Mse.evaluate(trace.output(), &y).unwrap();
        let mut signals = Default::default();
        net.backward_signals_into(FeedbackPath::Live, &trace, &err, &mut signals);
        let mut grads = Default::default();
        Cnn::gradients_into(&spec, &signals, &err, &trace, &mut grads);
        let analytic: Vec<Vec<f64>> =
            grads.as_slices().into_iter().map(|g| g.unwrap().to_vec()).collect();
        let scale = analytic.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
        let eval = |n: &Cnn<f64>| Loss::Mse.evaluate(&n.predict(&x).unwrap(), &y).unwrap().0;
        for (k, g) in analytic.iter().enumerate() {
            for i in 0..g.len() {
                let mut plus = net.clone();
                plus.params_mut()[k][i] += STEP;
                let mut minus = net.clone();
                minus.params_mut()[k][i] -= STEP;
                let fd = (eval(&plus) - eval(&minus)) / (2.0 * STEP);
                prop_assert!(close(fd, g[i], scale, eval(&net)),
                    "{spec:?}: tensor {k} entry {i}: fd {fd} vs analytic {}", g[i]);
            }
        }
    }
}
