//! User-input errors are errors (naming what is wrong), never panics.

use widealign_models::{
    accuracy, one_hot_targets, Loss, Mlp, MlpSpec, ModelError, Parameterization, Rnn, RnnSpec,
};
use widealign_tensor::{Activation, Mat};

#[test]
fn batch_width_mismatch_names_both_shapes() {
    let net = Mlp::<f32>::new(&MlpSpec::new(784, vec![16], 10, Activation::Relu), 0).unwrap();
    let x = Mat::<f32>::zeros(100, 783);
    for e in [net.forward(&x).unwrap_err(), net.predict(&x).unwrap_err()] {
        match &e {
            ModelError::ShapeMismatch { expected, got, .. } => {
                assert_eq!(expected, "B × 784");
                assert_eq!(got, "100 × 783");
            }
            other => panic!("unexpected {other}"),
        }
    }
    let rnn = Rnn::<f32>::new(&RnnSpec::new(1, 8, 1, Activation::Relu), 0).unwrap();
    let msg = rnn
        .forward(&[Mat::zeros(50, 1), Mat::zeros(49, 1)])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("50 × 1") && msg.contains("49 × 1"), "{msg}");
    let msg = rnn.predict(&[Mat::zeros(50, 2)]).unwrap_err().to_string();
    assert!(msg.contains("50 × 1") && msg.contains("50 × 2"), "{msg}");
}

#[test]
fn invalid_specs_name_the_field() {
    let cases = [
        (MlpSpec::new(0, vec![4], 2, Activation::Relu), "input_dim"),
        (
            MlpSpec::new(3, vec![4, 0], 2, Activation::Relu),
            "hidden[1]",
        ),
        (MlpSpec::new(3, vec![4], 0, Activation::Relu), "output_dim"),
        (
            MlpSpec::new(3, vec![4], 2, Activation::Relu).with_param(Parameterization::Ntk {
                w_std: f64::NAN,
                b_std: 0.1,
            }),
            "w_std",
        ),
        (
            MlpSpec::new(3, vec![4], 2, Activation::Relu).with_param(Parameterization::Standard {
                w_std: 1.0,
                b_std: -0.1,
            }),
            "b_std",
        ),
    ];
    for (spec, field) in cases {
        let msg = Mlp::<f32>::new(&spec, 0).unwrap_err().to_string();
        assert!(msg.contains(field), "{msg}");
    }
    let msg = Rnn::<f32>::new(&RnnSpec::new(1, 0, 1, Activation::Tanh), 0)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("width"), "{msg}");
}

#[test]
fn loss_and_label_errors() {
    let f = Mat::<f32>::zeros(4, 10);
    let msg = Loss::CrossEntropy
        .evaluate(&f, &Mat::zeros(4, 9))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("4 × 10") && msg.contains("4 × 9"), "{msg}");
    assert!(accuracy(&f, &[1, 2, 3])
        .unwrap_err()
        .to_string()
        .contains("3 labels"));
    assert!(one_hot_targets::<f32>(&[3, 10], 10)
        .unwrap_err()
        .to_string()
        .contains("label 10 at position 1"));
    let msg = Loss::Mse
        .evaluate_sequence(&[f.clone(), f.clone()], &[f.clone(), Mat::zeros(4, 3)])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("time step 2"), "{msg}");
}
