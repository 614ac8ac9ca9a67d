//! The simulation harness: finite-width prediction errors shrink with width, the report has the
//! JSON shape of `widealign dynamics --json`, unstable learning rates are refused, and results
//! do not depend on the number of threads.

use widealign_models::MlpSpec;
use widealign_ntk::analytic::{InfiniteMlp, KernelOptions, KernelRequest};
use widealign_ntk::experiment::{
    dynamics_experiment, pooled_log_slope, DynamicsConfig, Precision, RegressionData,
};
use widealign_ntk::NtkError;
use widealign_tensor::{gemm, rng::SeedStream, Activation, Mat};

/// The student of [`task`]: `depth` hidden layers (their width is set by each config's
/// `widths`), 4 inputs, one output, the spec's default `s_w = 1`, `s_b = 0.1`, zero biases.
fn student(depth: usize, act: Activation) -> MlpSpec {
    MlpSpec::uniform(4, 16, depth, 1, act)
}

/// A small teacher task: y = tanh(x·v) + 0.5 sin(x·u), 16 training and 16 test points.
fn task() -> RegressionData {
    let s = SeedStream::new(3);
    let x: Mat<f64> = s.gaussian_matrix("x", 16, 4, 1.0);
    let xt: Mat<f64> = s.gaussian_matrix("xt", 16, 4, 1.0);
    let v: Mat<f64> = s.gaussian_matrix("v", 4, 2, 0.5);
    let p = gemm::matmul(&x, &v);
    let y = Mat::from_fn(16, 1, |i, _| p[(i, 0)].tanh() + 0.5 * p[(i, 1)].sin());
    RegressionData {
        x_train: x,
        y_train: y,
        x_test: xt,
    }
}

#[test]
fn errors_shrink_with_width_and_report_has_the_contract_shape() {
    let data = task();
    let mut cfg = DynamicsConfig::new(student(1, Activation::Erf), vec![32, 128, 512], 40, 0.5, 0);
    cfg.repeats = 3;
    let r = dynamics_experiment(&cfg, &data).unwrap();
    assert_eq!(r.errors.weight_norm.len(), 3);
    assert!(r.errors.weight_norm.iter().all(|v| v.len() == 2));
    for l in 0..2 {
        assert!(
            r.errors.weight_direction[2][l] < 0.7 * r.errors.weight_direction[0][l],
            "direction layer {}: {:?}",
            l + 1,
            r.errors.weight_direction
        );
        assert!(
            r.errors.weight_norm[2][l] < r.errors.weight_norm[0][l],
            "norm layer {}: {:?}",
            l + 1,
            r.errors.weight_norm
        );
    }
    assert!(
        r.errors.function[2] < 0.7 * r.errors.function[0],
        "{:?}",
        r.errors.function
    );
    for s in [r.slopes.weight_direction, r.slopes.function] {
        assert!(s < -0.2 && s > -1.0, "slope {s}");
    }
    let json = serde_json::to_value(&r).unwrap();
    for key in ["widths", "errors", "slopes", "max_stable_lr"] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    for key in ["weight_norm", "weight_direction", "function"] {
        assert!(json["errors"].get(key).is_some() && json["slopes"].get(key).is_some());
    }
    assert!(r.max_stable_lr > 0.5);
}

#[test]
fn refuses_learning_rates_beyond_the_stability_limit() {
    let data = task();
    let spec = MlpSpec::uniform(4, 1, 1, 1, Activation::Relu);
    let t = InfiniteMlp::from_spec(&spec)
        .unwrap()
        .kernels(
            &data.x_train,
            None,
            &KernelRequest::outputs(),
            &KernelOptions::default(),
        )
        .unwrap()
        .ntk
        .unwrap();
    let lambda_max = nalgebra::SymmetricEigen::new(t).eigenvalues.max();
    let limit = 16.0 / lambda_max;
    let relu = student(1, Activation::Relu);
    let cfg = DynamicsConfig::new(relu.clone(), vec![16], 5, limit * 1.001, 0);
    match dynamics_experiment(&cfg, &data) {
        Err(NtkError::UnstableLearningRate { max_stable_lr, .. }) => {
            assert!((max_stable_lr - limit).abs() < 1e-9 * limit);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // the library names the field, not a command-line flag
    let msg = dynamics_experiment(&cfg, &data).unwrap_err().to_string();
    assert!(msg.contains("choose lr below"), "{msg}");
    assert!(!msg.contains("--"), "{msg}");
    let ok = DynamicsConfig::new(relu.clone(), vec![16], 5, limit * 0.5, 0);
    assert!(dynamics_experiment(&ok, &data).is_ok());
    let bad = DynamicsConfig::new(relu, vec![], 5, 0.1, 0);
    assert!(dynamics_experiment(&bad, &data).is_err());
}

#[test]
fn same_numbers_for_any_thread_count() {
    let data = task();
    let mut cfg = DynamicsConfig::new(student(2, Activation::Tanh), vec![24, 96], 10, 0.3, 1);
    cfg.precision = Precision::F64;
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let mut r = dynamics_experiment(&cfg, &data).unwrap();
                r.seconds.clear();
                let k = InfiniteMlp::from_spec(&MlpSpec::uniform(4, 1, 3, 1, Activation::Relu))
                    .unwrap()
                    .kernels(
                        &data.x_train,
                        Some(&data.x_test),
                        &KernelRequest::all(),
                        &KernelOptions {
                            block: 5,
                            ..KernelOptions::default()
                        },
                    )
                    .unwrap();
                (serde_json::to_string(&r).unwrap(), k)
            })
    };
    let (a, ka) = run(1);
    let (b, kb) = run(2);
    assert_eq!(a, b);
    assert_eq!(ka, kb);
}

#[test]
fn pooled_slope_recovers_a_power_law() {
    let widths = [16, 64, 256, 1024];
    let series: Vec<Vec<f64>> = [1.0, 3.0]
        .iter()
        .map(|c| widths.iter().map(|&w| c * (w as f64).powf(-0.5)).collect())
        .collect();
    assert!((pooled_log_slope(&widths, &series) + 0.5).abs() < 1e-12);
    assert!(pooled_log_slope(&widths[..1], &series).is_nan());
}
