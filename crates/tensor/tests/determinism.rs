//! Results must be bit-identical whatever the number of rayon threads.

use rayon::ThreadPoolBuilder;
use widealign_tensor::{elementwise, gemm, reduce, rng::SeedStream, Activation, Mat};

fn workload() -> Vec<u64> {
    let s = SeedStream::new(5);
    let a: Mat<f32> = s.gaussian_matrix("a", 100, 784, 1.0);
    let w: Mat<f32> = s.gaussian_matrix("w", 512, 784, 1.0);
    let mut h = gemm::matmul_nt(&a, &w);
    Activation::Gelu.apply_slice(h.as_mut_slice());
    let g = gemm::matmul_tn(&h, &a);
    let mut big: Vec<f32> = s.gaussian_vec("big", 300_000, 1.0);
    elementwise::axpy(0.5, &g.as_slice()[..300_000], &mut big);
    let mut out: Vec<u64> = h.iter().map(|x| x.to_bits() as u64).collect();
    out.extend(g.iter().map(|x| x.to_bits() as u64));
    out.push(reduce::frobenius_norm(&big).to_bits());
    out.push(reduce::dot(g.as_slice(), g.as_slice()).to_bits());
    out.extend(reduce::column_sums(&g).iter().map(|x| x.to_bits() as u64));
    let g64: Mat<f64> = s.gaussian_matrix("g64", 300, 300, 1.0);
    out.extend(gemm::matmul(&g64, &g64).iter().map(|x| x.to_bits()));
    out
}

#[test]
fn bit_identical_for_one_and_two_threads() {
    let one = ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let two = ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let four = ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    let r1 = one.install(workload);
    let r2 = two.install(workload);
    let r4 = four.install(workload);
    assert!(r1 == r2, "1 vs 2 threads differ");
    assert!(r1 == r4, "1 vs 4 threads differ");
}
