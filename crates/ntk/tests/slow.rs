//! Slow experiments (`just slow`, i.e. `cargo test --release -- --ignored --nocapture`): the
//! width table of docs/theory.md §4.4 and the N = 10,000 kernel. They print their measurements; the
//! assertions check the science, never the time.

use std::time::Instant;

use widealign_data::synthetic::teacher_task;
use widealign_data::TeacherParams;
use widealign_models::{BiasInit, MlpSpec, Parameterization};
use widealign_ntk::analytic::{InfiniteMlp, KernelOptions, KernelRequest};
use widealign_ntk::experiment::{dynamics_experiment, DynamicsConfig, RegressionData};
use widealign_tensor::{rng::SeedStream, Activation, Mat};

#[test]
#[ignore = "slow: trains widths up to 4096 (about a minute per activation)"]
fn width_table_on_the_teacher_task() {
    let params = TeacherParams {
        train: 64,
        test: 256,
        ..TeacherParams::default()
    };
    let (train, test) = teacher_task(&params, 0).unwrap();
    let f = |m: &Mat<f32>| m.map(|v| v as f64);
    let data = RegressionData {
        x_train: f(&train.x),
        y_train: f(&train.y),
        x_test: f(&test.x),
    };
    for act in [Activation::Erf, Activation::Relu] {
        let student = MlpSpec::uniform(params.input_dim, 64, 2, params.outputs, act);
        let cfg = DynamicsConfig::new(student, vec![64, 256, 1024, 4096], 200, 0.1, 0);
        let start = Instant::now();
        let r = dynamics_experiment(&cfg, &data).unwrap();
        println!(
            "{act} ({:.1} s): {}",
            start.elapsed().as_secs_f64(),
            serde_json::to_string(&r).unwrap()
        );
        assert!(
            r.slopes.function < -0.25,
            "{act}: function slope {}",
            r.slopes.function
        );
        assert!(
            r.slopes.weight_direction < -0.2,
            "{act}: direction slope {}",
            r.slopes.weight_direction
        );
        let first = &r.errors.weight_direction[0];
        let last = &r.errors.weight_direction[3];
        assert!(
            first.iter().zip(last).all(|(a, b)| b < a),
            "{act}: {first:?} → {last:?}"
        );
    }
}

#[test]
#[ignore = "slow: two 10,000 × 10,000 kernels (1.6 GB)"]
fn kernels_for_ten_thousand_inputs() {
    let n = 10_000;
    let x: Mat<f64> = SeedStream::new(0).gaussian_matrix("inputs", n, 64, 1.0);
    let spec = MlpSpec::uniform(64, 1, 3, 1, Activation::Relu)
        .with_param(Parameterization::Ntk {
            w_std: 1.4,
            b_std: 0.1,
        })
        .with_bias_init(BiasInit::Gaussian);
    let net = InfiniteMlp::from_spec(&spec).unwrap();
    let start = Instant::now();
    let k = net
        .kernels(
            &x,
            None,
            &KernelRequest::outputs(),
            &KernelOptions::default(),
        )
        .unwrap();
    println!(
        "N = {n}, depth-3 relu NNGP + NTK: {:.2} s with {} threads",
        start.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );
    let ntk = k.ntk.unwrap();
    assert_eq!(ntk.shape(), (n, n));
    for (i, j) in [(0, 1), (17, 9_999), (5_000, 123)] {
        assert_eq!(ntk[(i, j)], ntk[(j, i)]);
        assert!(ntk[(i, j)].abs() <= (ntk[(i, i)] * ntk[(j, j)]).sqrt());
    }
    // spot-check entries against the two-input computation
    let (_, t) = net
        .pair(
            x.row(17).transpose().as_slice(),
            x.row(9_999).transpose().as_slice(),
            &KernelOptions::default(),
        )
        .unwrap();
    assert!((t - ntk[(17, 9_999)]).abs() < 1e-12 * t.abs());
}
