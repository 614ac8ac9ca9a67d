//! The fused SGD step equals signals + gradients + update bit for bit, for every pathway, and
//! does not depend on the number of threads.

use rayon::ThreadPoolBuilder;
use widealign_models::{
    backward_signals, gradients, sgd_update_fused, BiasInit, Feedback, FusedBuffers, FusedFeedback,
    Loss, Mlp, MlpSpec, Parameterization, Trace,
};
use widealign_tensor::{rng::SeedStream, Activation, Mat};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    Live,
    FixedWeights,
    Direct,
    Readout,
}

/// Runs `steps` SGD steps with the fused update or with gradients + `apply_update`, with the
/// derivative trace and the activity trace chosen like the rules do (frozen ones for `frozen`).
fn train(
    spec: &MlpSpec,
    batch: usize,
    path: Path,
    frozen_trace: bool,
    steps: usize,
    fused: bool,
) -> Mlp<f32> {
    let s = SeedStream::new(3);
    let mut net = Mlp::<f32>::new(spec, 5).unwrap();
    let frozen = Mlp::<f32>::new(spec, 6).unwrap();
    let widths = spec.widths();
    let direct: Vec<Mat<f32>> = (1..spec.depth())
        .map(|l| s.gaussian_matrix(&format!("d{l}"), widths[l], spec.output_dim, 0.3))
        .collect();
    let mut buffers = FusedBuffers::new();
    let mut trace = Trace::zeros(spec, batch);
    for k in 0..steps {
        let x: Mat<f32> = s.gaussian_matrix(&format!("x{k}"), batch, spec.input_dim, 1.0);
        let y: Mat<f32> = s.gaussian_matrix(&format!("y{k}"), batch, spec.output_dim, 1.0);
        net.forward_into(&x, &mut trace).unwrap();
        let (_, err) = Loss::Mse.evaluate(trace.output(), &y).unwrap();
        let frozen_t = frozen.forward(&x).unwrap();
        let (deriv, acts) = if frozen_trace {
            (&frozen_t, &frozen_t)
        } else {
            (&trace, &trace)
        };
        let fixed = match path {
            Path::Live => None,
            Path::FixedWeights => Some(Feedback::Weights(&frozen.weights)),
            Path::Direct => Some(Feedback::Direct(&direct)),
            Path::Readout => Some(Feedback::ReadoutOnly),
        };
        let lr = 0.37;
        if fused {
            let fb = fixed.map_or(FusedFeedback::Live, FusedFeedback::Fixed);
            sgd_update_fused(&mut net, fb, deriv, acts, &err, lr, &mut buffers);
        } else {
            let fb = fixed.unwrap_or(Feedback::Weights(&net.weights));
            let p = widealign_models::Pathway {
                feedback: fb,
                derivatives: deriv,
            };
            let sig = backward_signals(spec, &p, &err);
            let g = gradients(spec, &sig, acts);
            net.apply_update(&g, lr);
        }
    }
    net
}

fn small_specs() -> Vec<MlpSpec> {
    vec![
        MlpSpec::new(5, vec![7, 9], 3, Activation::Tanh)
            .with_bias_init(BiasInit::Gaussian)
            .with_param(Parameterization::Ntk {
                w_std: 1.3,
                b_std: 0.2,
            }),
        MlpSpec::new(6, vec![11], 2, Activation::Relu).with_param(Parameterization::Standard {
            w_std: 1.0,
            b_std: 0.5,
        }),
        MlpSpec::new(4, vec![], 3, Activation::Erf),
        MlpSpec::new(3, vec![5, 6, 4], 2, Activation::Gelu),
    ]
}

#[test]
fn fused_equals_unfused_bit_for_bit_on_every_pathway() {
    for spec in small_specs() {
        for path in [Path::Live, Path::FixedWeights, Path::Direct, Path::Readout] {
            for frozen in [false, true] {
                let a = train(&spec, 6, path, frozen, 3, true);
                let b = train(&spec, 6, path, frozen, 3, false);
                assert!(a == b, "{path:?} frozen={frozen} spec {spec:?}");
            }
        }
    }
}

#[test]
fn fused_equals_unfused_when_layers_are_split_into_column_blocks() {
    // 1100 × 1000 = 1.1 M weights: the second layer is updated in column blocks.
    let spec = MlpSpec::new(40, vec![1000, 1100], 3, Activation::Relu);
    let a = train(&spec, 9, Path::Live, false, 2, true);
    let b = train(&spec, 9, Path::Live, false, 2, false);
    assert!(a == b);
    assert_ne!(
        a,
        Mlp::<f32>::new(&spec, 5).unwrap(),
        "the step changed the weights"
    );
}

#[test]
fn fused_step_is_independent_of_thread_count() {
    let spec = MlpSpec::new(40, vec![1000, 1100], 3, Activation::Relu);
    let one = ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let two = ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let a = one.install(|| train(&spec, 9, Path::FixedWeights, true, 2, true));
    let b = two.install(|| train(&spec, 9, Path::FixedWeights, true, 2, true));
    assert!(a == b);
}

#[test]
#[should_panic(expected = "sgd_update_fused: error is")]
fn wrong_error_shape_panics_with_shapes() {
    let spec = MlpSpec::new(3, vec![4], 2, Activation::Relu);
    let mut net = Mlp::<f32>::new(&spec, 0).unwrap();
    let t = net.forward(&Mat::zeros(2, 3)).unwrap();
    let bad = Mat::<f32>::zeros(2, 3);
    sgd_update_fused(
        &mut net,
        FusedFeedback::Live,
        &t,
        &t,
        &bad,
        0.1,
        &mut FusedBuffers::new(),
    );
}

#[test]
fn buffers_reused_across_pathways_and_batch_sizes_give_the_same_steps() {
    // One FusedBuffers / Signals pair carried through steps that switch pathway and batch size
    // (readout-only empties the lower signal slots, the next full pathway refills them).
    let spec = MlpSpec::new(4, vec![6, 5], 3, Activation::Tanh);
    let s = SeedStream::new(8);
    let frozen = Mlp::<f64>::new(&spec, 2).unwrap();
    let direct: Vec<Mat<f64>> = (1..spec.depth())
        .map(|l| s.gaussian_matrix(&format!("d{l}"), spec.widths()[l], 3, 0.5))
        .collect();
    let mut reused = Mlp::<f64>::new(&spec, 1).unwrap();
    let mut fresh = reused.clone();
    let mut unfused = reused.clone();
    let mut buffers = FusedBuffers::new();
    let mut signals = widealign_models::Signals::new();
    let schedule = [(0, 5), (3, 5), (0, 4), (2, 7), (3, 7), (1, 7), (0, 5)];
    for (k, &(path, batch)) in schedule.iter().enumerate() {
        let x: Mat<f64> = s.gaussian_matrix(&format!("x{k}"), batch, 4, 1.0);
        let y: Mat<f64> = s.gaussian_matrix(&format!("y{k}"), batch, 3, 1.0);
        let fixed = match path {
            0 => None,
            1 => Some(Feedback::Weights(&frozen.weights)),
            2 => Some(Feedback::Direct(&direct)),
            _ => Some(Feedback::ReadoutOnly),
        };
        let fb = fixed.map_or(FusedFeedback::Live, FusedFeedback::Fixed);
        let t = reused.forward(&x).unwrap();
        let (_, err) = Loss::Mse.evaluate(t.output(), &y).unwrap();
        sgd_update_fused(&mut reused, fb, &t, &t, &err, 0.2, &mut buffers);
        let t = fresh.forward(&x).unwrap();
        let (_, err) = Loss::Mse.evaluate(t.output(), &y).unwrap();
        sgd_update_fused(&mut fresh, fb, &t, &t, &err, 0.2, &mut FusedBuffers::new());
        let t = unfused.forward(&x).unwrap();
        let (_, err) = Loss::Mse.evaluate(t.output(), &y).unwrap();
        let p = widealign_models::Pathway {
            feedback: fixed.unwrap_or(Feedback::Weights(&unfused.weights)),
            derivatives: &t,
        };
        widealign_models::backward_signals_into(&spec, &p, &err, &mut signals);
        let reached = signals.d.iter().filter(|d| d.is_some()).count();
        assert_eq!(
            reached,
            if path == 3 { 1 } else { spec.depth() },
            "step {k}"
        );
        let g = gradients(&spec, &signals, &t);
        unfused.apply_update(&g, 0.2);
        assert!(reused == fresh, "step {k}: reused buffers changed the step");
        assert!(reused == unfused, "step {k}: fused and unfused differ");
    }
    assert!(buffers.bytes() > 0);
}
