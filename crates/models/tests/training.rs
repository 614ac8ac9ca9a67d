//! Small full-batch training runs: the loss must go down.

use widealign_models::{
    backward_signals_into, gradients_into, one_hot_targets, rnn_backward_signals, rnn_gradients,
    Feedback, Grads, Loss, Mlp, MlpSpec, Optimizer, OptimizerKind, Parameterization, Pathway, Rnn,
    RnnFeedback, RnnPathway, RnnSpec, Signals, Trace,
};
use widealign_tensor::{rng::SeedStream, Activation, Mat};

/// Full-batch gradient descent on a tiny regression problem; returns the loss before each step.
fn train_mlp(spec: &MlpSpec, lr: f64, steps: usize, opt: OptimizerKind) -> Vec<f64> {
    let mut net = Mlp::<f64>::new(spec, 0).unwrap();
    let s = SeedStream::new(1);
    let x: Mat<f64> = s.gaussian_matrix("x", 20, spec.input_dim, 1.0);
    let y: Mat<f64> = one_hot_targets(
        &(0..20).map(|i| i % spec.output_dim).collect::<Vec<_>>(),
        spec.output_dim,
    )
    .unwrap();
    let mut optimizer = Optimizer::new(opt);
    // the no-allocation path, as a training loop would use it
    let (mut trace, mut sig, mut grads) = (Trace::zeros(spec, 20), Signals::new(), Grads::new());
    let mut err = Mat::zeros(0, 0);
    let mut losses = Vec::new();
    for _ in 0..steps {
        net.forward_into(&x, &mut trace).unwrap();
        losses.push(
            Loss::Mse
                .evaluate_into(trace.output(), &y, &mut err)
                .unwrap(),
        );
        let p = Pathway {
            feedback: Feedback::Weights(&net.weights),
            derivatives: &trace,
        };
        backward_signals_into(spec, &p, &err, &mut sig);
        gradients_into(spec, &sig, &trace, &mut grads);
        optimizer.step_network(&mut net, &grads, lr);
    }
    losses
}

#[test]
fn mlp_gradient_descent_lowers_the_loss_every_step() {
    for act in [Activation::Relu, Activation::Tanh, Activation::Erf] {
        for param in [
            Parameterization::Ntk {
                w_std: 1.0,
                b_std: 0.1,
            },
            Parameterization::Standard {
                w_std: 1.0,
                b_std: 0.1,
            },
        ] {
            let spec = MlpSpec::new(5, vec![32, 32], 3, act).with_param(param);
            let losses = train_mlp(&spec, 0.2, 40, OptimizerKind::Sgd);
            for w in losses.windows(2) {
                assert!(w[1] < w[0], "{act} {}: {losses:?}", param.name());
            }
            assert!(losses[39] < 0.8 * losses[0], "{act}: {losses:?}");
        }
    }
}

#[test]
fn adam_fits_the_tiny_problem() {
    let spec =
        MlpSpec::new(5, vec![32], 3, Activation::Relu).with_param(Parameterization::Standard {
            w_std: 1.0,
            b_std: 0.1,
        });
    let losses = train_mlp(&spec, 1e-2, 100, OptimizerKind::adam());
    assert!(losses[99] < 0.1 * losses[0], "{losses:?}");
}

#[test]
fn rnn_gradient_descent_lowers_the_loss_every_step() {
    for act in [Activation::Relu, Activation::Tanh] {
        let spec = RnnSpec::new(1, 32, 1, act);
        let mut net = Rnn::<f64>::new(&spec, 0).unwrap();
        let s = SeedStream::new(2);
        // a delayed-copy task: y_t = x_{t-1}
        let xs: Vec<Mat<f64>> = (0..6)
            .map(|t| s.gaussian_matrix(&format!("x{t}"), 10, 1, 1.0))
            .collect();
        let ys: Vec<Mat<f64>> = (0..6)
            .map(|t| {
                if t == 0 {
                    Mat::zeros(10, 1)
                } else {
                    xs[t - 1].clone()
                }
            })
            .collect();
        let mut losses = Vec::new();
        for _ in 0..30 {
            let trace = net.forward(&xs).unwrap();
            let (l, errs) = Loss::Mse.evaluate_sequence(&trace.outputs, &ys).unwrap();
            losses.push(l);
            let p = RnnPathway {
                feedback: RnnFeedback::Weights {
                    w_rec: &net.w_rec,
                    w_out: &net.w_out,
                },
                derivatives: &trace,
            };
            let g = rnn_gradients(
                &spec,
                &rnn_backward_signals(&spec, &p, &errs),
                &errs,
                &trace,
            );
            net.apply_update(&g, 0.05);
        }
        for w in losses.windows(2) {
            assert!(w[1] < w[0], "{act}: {losses:?}");
        }
        assert!(net.r0.iter().any(|&v| v != 0.0), "r0 never learned");
    }
}
