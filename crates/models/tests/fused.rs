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
