//! Times the blocked Cholesky of [`widealign_ntk::solve::SymTiles`] on a synthetic SPD matrix:
//! `cargo run --release -p widealign-ntk --example chol_speed -- N TILE f32|f64`.
//! Prints one JSON line with the seconds and the GFLOP/s (`n³/3` multiply-adds, 2 flops each).
use std::time::Instant;
use widealign_ntk::solve::SymTiles;
use widealign_tensor::Float;

fn run<T: Float>(n: usize, b: usize) {
    let mut t = SymTiles::<T>::zeros(n, b).unwrap();
    // a diagonally dominant SPD matrix: 1/(1+|i−j|) off the diagonal, n on it
    for i in 0..t.blocks() {
        for (j, tile) in t.row_tiles_mut(i).into_iter().enumerate() {
            let (r0, c0) = (i * b, j * b);
            for q in 0..tile.ncols() {
                for p in 0..tile.nrows() {
                    let (r, c) = (r0 + p, c0 + q);
                    let v = if r == c { n as f64 } else { 1.0 / (1.0 + r.abs_diff(c) as f64) };
                    tile[(p, q)] = T::cast(v);
                }
            }
        }
    }
    let start = Instant::now();
    t.cholesky().unwrap();
    let s = start.elapsed().as_secs_f64();
    let gflops = (n as f64).powi(3) / 3.0 * 2.0 / s / 1e9;
    println!(
        "{{\"n\": {n}, \"tile\": {b}, \"precision\": \"{}\", \"seconds\": {s:.3}, \"gflops\": {gflops:.1}, \"threads\": {}}}",
        T::NAME,
        rayon::current_num_threads()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(4000, |s| s.parse().unwrap());
    let b: usize = args.get(2).map_or(512, |s| s.parse().unwrap());
    match args.get(3).map_or("f32", String::as_str) {
        "f64" => run::<f64>(n, b),
        _ => run::<f32>(n, b),
    }
}
