//! Property tests: for random architectures and inputs, the analytic kernels are symmetric,
//! positive semi-definite, satisfy Cauchy–Schwarz, and the NTK is the sum of the layer shares.

use nalgebra::SymmetricEigen;
use proptest::prelude::*;
use widealign_models::{BiasInit, MlpSpec, Parameterization};
use widealign_ntk::analytic::{InfiniteMlp, KernelOptions, KernelRequest};
use widealign_tensor::{Activation, Mat};

fn arch() -> impl Strategy<Value = (Activation, usize, f64, f64, bool)> {
    (
        prop_oneof![
            Just(Activation::Relu),
            Just(Activation::Erf),
            Just(Activation::Identity),
            Just(Activation::Tanh)
        ],
        1usize..4,
        0.3f64..2.5,
        0.0f64..1.0,
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn kernels_are_symmetric_psd_and_additive(
        (act, hidden, w_std, b_std, gaussian) in arch(),
        data in prop::collection::vec(-2.0f64..2.0, 6 * 3),
    ) {
        let x = Mat::from_row_slice(6, 3, &data);
        let spec = MlpSpec::uniform(3, 8, hidden, 1, act)
            .with_param(Parameterization::Ntk { w_std, b_std })
            .with_bias_init(if gaussian { BiasInit::Gaussian } else { BiasInit::Zero });
        let k = InfiniteMlp::from_spec(&spec)
            .unwrap()
            .kernels(&x, None, &KernelRequest::all(), &KernelOptions::default())
            .unwrap();
        let ntk = k.ntk.as_ref().unwrap();
        let nngp = k.nngp.as_ref().unwrap();
        for m in [ntk, nngp] {
            prop_assert!(m.iter().all(|v| v.is_finite()));
            prop_assert_eq!(m, &m.transpose());
            let eig = SymmetricEigen::new(m.clone()).eigenvalues;
            let scale = eig.amax().max(1e-300);
            prop_assert!(eig.min() >= -1e-10 * scale, "min eigenvalue {}", eig.min());
            for i in 0..6 {
                for j in 0..6 {
                    prop_assert!(m[(i, j)].abs() <= (m[(i, i)] * m[(j, j)]).sqrt() * (1.0 + 1e-12) + 1e-300);
                }
            }
        }
        let mut total = Mat::zeros(6, 6);
        for l in 1..=hidden + 1 {
            total += k.weight_share(l) + k.bias_share(l);
        }
        prop_assert!((total - ntk).abs().max() <= 1e-12 * ntk.abs().max().max(1e-300));
    }
}
