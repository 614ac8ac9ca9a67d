//! The closed-form dynamics (docs/theory.md §4) equal the network linearised at its initialisation
//! trained step by step, and the predicted weight change equals the linearised parameter change.

use widealign_models::{BiasInit, Mlp, MlpSpec, Parameterization, Trace};
use widealign_ntk::dynamics::{function_change, quadratic_norm, KernelDynamics, Schedule};
use widealign_ntk::empirical::empirical_ntk;
use widealign_ntk::predict::{predicted_change, stack, unstack};
use widealign_tensor::{rng::SeedStream, Activation, Mat};

/// `f_lin(X) = f_0(X) + J_0(X) Δθ` by forward-mode differentiation through the frozen network.
fn linearised_output(
    net0: &Mlp<f64>,
    trace0: &Trace<f64>,
    dw: &[Mat<f64>],
    db: &[Vec<f64>],
) -> Mat<f64> {
    let spec = &net0.spec;
    let widths = spec.widths();
    let s = spec.param.bias_multiplier();
    let depth = spec.depth();
    let mut a_dot = Mat::zeros(trace0.batch(), widths[0]);
    let mut h_dot = Mat::zeros(0, 0);
    for l in 1..=depth {
        let m = spec.param.weight_multiplier(widths[l - 1]);
        let a0 = &trace0.act[l - 1];
        h_dot = (&a_dot * net0.weights[l - 1].transpose() + a0 * dw[l - 1].transpose()) * m;
        for mut row in h_dot.row_iter_mut() {
            for (v, b) in row.iter_mut().zip(&db[l - 1]) {
                *v += s * b;
            }
        }
        if l < depth {
            let h0 = &trace0.pre[l - 1];
            a_dot = h_dot.zip_map(h0, |t, h| t * spec.activation.derivative(h));
        }
    }
    trace0.output() + h_dot
}

#[test]
fn closed_form_equals_linearised_network_trained_step_by_step() {
    for act in [Activation::Tanh, Activation::Relu] {
        let spec = MlpSpec::uniform(3, 6, 2, 2, act)
            .with_param(Parameterization::Ntk {
                w_std: 1.3,
                b_std: 0.4,
            })
            .with_bias_init(BiasInit::Gaussian);
        let net0 = Mlp::<f64>::new(&spec, 5).unwrap();
        let seeds = SeedStream::new(9);
        let x: Mat<f64> = seeds.gaussian_matrix("x", 7, 3, 1.0);
        let y: Mat<f64> = seeds.gaussian_matrix("y", 7, 2, 1.0);
        let xt: Mat<f64> = seeds.gaussian_matrix("xt", 4, 3, 1.0);
        let trace0 = net0.forward(&x).unwrap();
        let trace0_test = net0.forward(&xt).unwrap();
        let theta = empirical_ntk(&net0, &x, None).unwrap();
        let theta_test = empirical_ntk(&net0, &xt, Some(&x)).unwrap();
        let lr = 0.4;
        let dynamics = KernelDynamics::new(&theta.total(), 1, lr).unwrap();
        dynamics.check_stable().unwrap();
        let r0 = stack(&(trace0.output() - &y));
        let (n, c) = (7.0, 2.0);

        let mut dw: Vec<Mat<f64>> = net0.weights.iter().map(|w| w * 0.0).collect();
        let mut db: Vec<Vec<f64>> = net0.biases.iter().map(|b| vec![0.0; b.len()]).collect();
        for k in 0..=25u64 {
            let f = linearised_output(&net0, &trace0, &dw, &db);
            if k % 5 == 0 {
                let s = Schedule::Steps(k);
                let eps = dynamics.eps(&r0, s).unwrap();
                // outputs on the training and the test points
                let f_closed = trace0.output()
                    + unstack(&function_change(&theta.total(), &eps).unwrap(), 2).unwrap();
                assert!((&f - &f_closed).abs().max() < 1e-11, "{act} k={k} train");
                let ft = linearised_output(&net0, &trace0_test, &dw, &db);
                let ft_closed = trace0_test.output()
                    + unstack(&function_change(&theta_test.total(), &eps).unwrap(), 2).unwrap();
                assert!((&ft - &ft_closed).abs().max() < 1e-11, "{act} k={k} test");
                // residual
                let r = dynamics.residual(&r0, s).unwrap();
                assert!((stack(&(&f - &y)) - r).abs().max() < 1e-11);
                // each layer's share of the change sums to the whole change
                let mut shares = Mat::zeros(8, 1);
                for l in 1..=3 {
                    shares += function_change(&theta_test.layer(l), &eps).unwrap();
                }
                assert!(
                    (unstack(&shares, 2).unwrap() - (&ft - trace0_test.output()))
                        .abs()
                        .max()
                        < 1e-11
                );
                // predicted weight change = linearised parameter change; its norm = εᵀΘ^W_l ε
                let pred = predicted_change(&net0, &x, &unstack(&eps, 2).unwrap()).unwrap();
                for l in 0..3 {
                    let pw = pred.weights[l].as_ref().unwrap();
                    let scale = pw.norm().max(1e-300);
                    assert!(
                        (pw - &dw[l]).norm() <= 1e-10 * scale.max(1.0),
                        "{act} k={k} layer {}",
                        l + 1
                    );
                    let pb = pred.biases[l].as_ref().unwrap();
                    let bd: f64 = pb
                        .iter()
                        .zip(&db[l])
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f64::max);
                    assert!(bd < 1e-10);
                    let norm = quadratic_norm(&theta.weights[l], &eps).unwrap();
                    assert!(
                        (norm - dw[l].norm()).abs() < 1e-10 * (1.0 + norm),
                        "{act} layer {} norm",
                        l + 1
                    );
                }
            }
            // one gradient step of the linearised network: Δθ ← Δθ − lr·J_0ᵀ e
            let e = (&f - &y) * (2.0 / (n * c));
            let step = predicted_change(&net0, &x, &e).unwrap();
            for l in 0..3 {
                dw[l] += step.weights[l].as_ref().unwrap() * lr;
                for (d, g) in db[l].iter_mut().zip(step.biases[l].as_ref().unwrap()) {
                    *d += lr * g;
                }
            }
        }
    }
}
