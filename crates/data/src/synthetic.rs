//! Synthetic tasks: the Add task (recurrent) and teacher–student regression.
//!
//! **Add task** (docs/theory.md §6). Inputs `x_t ~ Bernoulli(p)` (default `p = 0.5`) for
//! `t = 1..T`, and targets
//!
//! ```text
//! y_t = bias + Σ_k c_k · x_{t − d_k},     x_s = 0 for s < 1,
//! ```
//!
//! by default `y_t = 0.5 + 0.5 x_{t−2} − 0.25 x_{t−5}` with `T = 100`, 300 training and 100 test
//! sequences. Sequence `i`'s inputs are drawn from the stream `data/add/train` (or `…/test`) in
//! the order `i = 0, 1, …`, step `t = 1..T` within a sequence, so the first sequences do not
//! change when more are requested.
//!
//! **The reference script's variant** ([`AddParams::wrap`], dataset `add-reference`). The
//! authors' `train_add.py` (`gen_data`) shifts each sequence with `np.roll` and then zeroes
//! the first `d_k` *sequences* instead of the first `d_k` time steps, so
//!
//! ```text
//! y_t = bias + Σ_k c_k · x_{((t − d_k − 1) mod T) + 1}    (the first d_k training sequences: term k is 0)
//! ```
//!
//! and the targets of steps `t ≤ d_k` depend on the *last* inputs of the sequence, which a
//! causal network has not seen. With `p = 1/2` no predictor can do better on a test sequence than
//! the irreducible loss (per-step MSE summed over the steps, [`add_wrap_floor`])
//!
//! ```text
//! Σ_k d_k · c_k² · p(1 − p)  =  2 · 0.25 · 0.25 + 5 · 0.0625 · 0.25  =  0.203125   (default terms)
//! ```
//!
//! **Teacher–student.** A random teacher MLP in the NTK parameterisation (docs/theory.md §1) with
//! `depth` hidden layers of `width` units,
//!
//! ```text
//! h¹ = (s_w/√n₀) W¹ x + s_b b¹,  a^l = φ(h^l),  h^{l+1} = (s_w/√n_l) W^{l+1} a^l + s_b b^{l+1},
//! f(x) = h^{depth+1}  (outputs units),
//! ```
//!
//! `W, b ~ N(0, 1)` from the streams `data/teacher/w{l}`, `b{l}`. Inputs are i.i.d. from an
//! [`InputDistribution`]; training targets are `f(x) + σ ε` with `ε ~ N(0, 1)` (`σ` =
//! [`TeacherParams::noise`]); test targets are the clean `f(x)` unless
//! [`TeacherParams::noisy_test`]. The teacher is evaluated in `f64`.
//!
//! ```
//! use widealign_data::synthetic::{add_task, AddParams};
//! let p = AddParams { train: 4, test: 2, steps: 6, ..AddParams::default() };
//! let (train, test) = add_task(&p, 0).unwrap();
//! assert_eq!((train.len(), test.len(), train.steps()), (4, 2, 6));
//! // y_t = 0.5 + 0.5 x_{t-2} - 0.25 x_{t-5}: at t = 1, 2 no delayed term exists
//! assert_eq!(train.y[0][(0, 0)], 0.5);
//! assert_eq!(train.y[2][(1, 0)], 0.5 + 0.5 * train.x[0][(1, 0)]);
//! ```

use widealign_tensor::rng::{self, SeedStream};
use widealign_tensor::{gemm, Activation, Mat};

use crate::dataset::{Sequences, Tabular};
use crate::error::{DataError, Result};

/// The largest number of generated values (inputs plus targets) a generator will allocate.
pub const MAX_GENERATED: usize = 1 << 28;

/// Parameters of the Add task.
#[derive(Clone, Debug, PartialEq)]
pub struct AddParams {
    /// Sequence length `T` (default 100).
    pub steps: usize,
    /// Training sequences (default 300).
    pub train: usize,
    /// Test sequences (default 100).
    pub test: usize,
    /// `(d_k, c_k)`: delay and coefficient of each term (default `[(2, 0.5), (5, −0.25)]`).
    pub terms: Vec<(usize, f64)>,
    /// The constant (default 0.5).
    pub bias: f64,
    /// `P(x_t = 1)` (default 0.5).
    pub p: f64,
    /// The reference script's wrap-around targets (see the module docs; default false).
    pub wrap: bool,
}

impl Default for AddParams {
    fn default() -> Self {
        AddParams {
            steps: 100,
            train: 300,
            test: 100,
            terms: vec![(2, 0.5), (5, -0.25)],
            bias: 0.5,
            p: 0.5,
            wrap: false,
        }
    }
}

impl AddParams {
    fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(DataError::option("add.steps", "0 steps"));
        }
        if self.train == 0 || self.test == 0 {
            return Err(DataError::option(
                if self.train == 0 {
                    "add.train"
                } else {
                    "add.test"
                },
                format!(
                    "{} training and {} test sequences: both must be at least 1",
                    self.train, self.test
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.p) {
            return Err(DataError::option(
                "add.p",
                format!("{}: not a probability", self.p),
            ));
        }
        if !self.bias.is_finite() {
            return Err(DataError::option("add.bias", "must be finite"));
        }
        if self.terms.iter().any(|t| !t.1.is_finite()) {
            return Err(DataError::option(
                "add.terms",
                "coefficients must be finite",
            ));
        }
        let total = (self.train as u128 + self.test as u128) * self.steps as u128 * 2;
        if total > MAX_GENERATED as u128 {
            return Err(DataError::option(
                "add.steps",
                format!("{total} generated values exceed the limit of {MAX_GENERATED}"),
            ));
        }
        Ok(())
    }
}

/// The Add-task targets for given inputs: `y[t] = bias + Σ c_k x[t − d_k]` (0-based `t`;
/// terms with `t < d_k` are 0). `x` is time-major, `N × 1` per step.
pub fn add_targets(x: &[Mat<f32>], terms: &[(usize, f64)], bias: f64) -> Vec<Mat<f32>> {
    let n = x.first().map_or(0, |m| m.nrows());
    (0..x.len())
        .map(|t| {
            Mat::from_fn(n, 1, |i, _| {
                let mut v = bias;
                for &(d, c) in terms {
                    if t >= d {
                        v += c * x[t - d][(i, 0)] as f64;
                    }
                }
                v as f32
            })
        })
        .collect()
}

/// The reference script's wrap-around targets: `y[t] = bias + Σ c_k x[(t − d_k) mod T]`
/// (0-based `t`), with term `k` zero in the first `d_k` sequences when `zero_leading` (the
/// training split of `train_add.py`, whose `roll[:d] = 0` zeroes rows, not steps).
pub fn add_targets_wrapped(
    x: &[Mat<f32>],
    terms: &[(usize, f64)],
    bias: f64,
    zero_leading: bool,
) -> Vec<Mat<f32>> {
    let steps = x.len();
    let n = x.first().map_or(0, |m| m.nrows());
    (0..steps)
        .map(|t| {
            Mat::from_fn(n, 1, |i, _| {
                let mut v = bias;
                for &(d, c) in terms {
                    if zero_leading && i < d {
                        continue;
                    }
                    let s = (t + steps - d % steps) % steps;
                    v += c * x[s][(i, 0)] as f64;
                }
                v as f32
            })
        })
        .collect()
}

/// The irreducible test loss of the wrap-around Add task (per-step MSE summed over the steps):
/// the targets of steps `t < d_k` carry `c_k x` of an input the network has not seen yet, of
/// variance `c_k² p(1 − p)`, so the best causal predictor scores `Σ_k min(d_k, T) c_k² p(1 − p)`
/// (0.203125 for the default task).
pub fn add_wrap_floor(p: &AddParams) -> f64 {
    p.terms
        .iter()
        .map(|&(d, c)| d.min(p.steps) as f64 * c * c * p.p * (1.0 - p.p))
        .sum()
}

fn add_split(p: &AddParams, n: usize, seeds: &SeedStream, name: &str) -> Sequences {
    let mut rng = seeds.rng(name);
    let mut x: Vec<Mat<f32>> = (0..p.steps).map(|_| Mat::zeros(n, 1)).collect();
    for i in 0..n {
        for xt in x.iter_mut() {
            xt[(i, 0)] = if rng::uniform(&mut rng) < p.p {
                1.0
            } else {
                0.0
            };
        }
    }
    let y = if p.wrap {
        add_targets_wrapped(&x, &p.terms, p.bias, name == "train")
    } else {
        add_targets(&x, &p.terms, p.bias)
    };
    Sequences { x, y }
}

/// Generates the Add task: `(train, test)` sequences, seeded.
pub fn add_task(p: &AddParams, seed: u64) -> Result<(Sequences, Sequences)> {
    p.validate()?;
    let seeds = SeedStream::new(seed).child("data").child("add");
    Ok((
        add_split(p, p.train, &seeds, "train"),
        add_split(p, p.test, &seeds, "test"),
    ))
}

/// How teacher–student inputs are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputDistribution {
    /// `x_j ~ N(0, 1)` i.i.d.
    Gaussian,
    /// Uniform on the sphere of radius `√d` (a Gaussian vector rescaled).
    Sphere,
    /// `x_j ~ U(−√3, √3)` i.i.d. (unit variance).
    Uniform,
}

impl std::str::FromStr for InputDistribution {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gaussian" => Ok(InputDistribution::Gaussian),
            "sphere" => Ok(InputDistribution::Sphere),
            "uniform" => Ok(InputDistribution::Uniform),
            _ => Err(DataError::option(
                "teacher.input",
                format!("{s:?}: expected gaussian, sphere or uniform"),
            )),
        }
    }
}

impl std::fmt::Display for InputDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InputDistribution::Gaussian => "gaussian",
            InputDistribution::Sphere => "sphere",
            InputDistribution::Uniform => "uniform",
        })
    }
}

/// Parameters of the teacher–student regression task.
#[derive(Clone, Debug, PartialEq)]
pub struct TeacherParams {
    /// Input dimension `n₀` (default 16).
    pub input_dim: usize,
    /// Hidden layers of the teacher (default 2).
    pub depth: usize,
    /// Hidden width of the teacher (default 512).
    pub width: usize,
    /// Outputs per sample (default 1).
    pub outputs: usize,
    /// The teacher's nonlinearity (default relu).
    pub activation: Activation,
    /// Weight scale `s_w` (default 1.0; √2 keeps relu pre-activations at unit scale).
    pub w_std: f64,
    /// Bias scale `s_b` (default 0.0).
    pub b_std: f64,
    /// Standard deviation `σ` of Gaussian label noise on the training targets (default 0).
    pub noise: f64,
    /// Also add the noise to the test targets (default false: test targets are clean).
    pub noisy_test: bool,
    /// The input distribution (default Gaussian).
    pub input: InputDistribution,
    /// Training samples (default 1000).
    pub train: usize,
    /// Test samples (default 1000).
    pub test: usize,
}

impl Default for TeacherParams {
    fn default() -> Self {
        TeacherParams {
            input_dim: 16,
            depth: 2,
            width: 512,
            outputs: 1,
            activation: Activation::Relu,
            w_std: 1.0,
            b_std: 0.0,
            noise: 0.0,
            noisy_test: false,
            input: InputDistribution::Gaussian,
            train: 1000,
            test: 1000,
        }
    }
}

impl TeacherParams {
    fn validate(&self) -> Result<()> {
        let pos = |v: usize, name: &str| {
            if v == 0 {
                Err(DataError::option(name, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        pos(self.input_dim, "teacher.input_dim")?;
        pos(self.width, "teacher.width")?;
        pos(self.outputs, "teacher.outputs")?;
        pos(self.train, "teacher.train")?;
        pos(self.test, "teacher.test")?;
        for (v, name) in [
            (self.w_std, "teacher.w_std"),
            (self.b_std, "teacher.b_std"),
            (self.noise, "teacher.noise"),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(DataError::option(
                    name,
                    format!("{v}: must be finite and ≥ 0"),
                ));
            }
        }
        let n = (self.train + self.test) as u128;
        let work = n * (self.input_dim.max(self.width) as u128)
            + (self.width as u128) * (self.width as u128) * self.depth as u128;
        if work > MAX_GENERATED as u128 {
            return Err(DataError::option(
                "teacher.width",
                format!("{work} generated values exceed the limit of {MAX_GENERATED}"),
            ));
        }
        Ok(())
    }
}

/// A random teacher network (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Teacher {
    /// `W^l` (`n_l × n_{l−1}`), `l = 1..=depth+1`.
    pub weights: Vec<Mat<f64>>,
    /// `b^l`.
    pub biases: Vec<Vec<f64>>,
    /// The nonlinearity.
    pub activation: Activation,
    /// `s_w`.
    pub w_std: f64,
    /// `s_b`.
    pub b_std: f64,
}

impl Teacher {
    /// Draws a teacher from the streams `data/teacher/w{l}` and `data/teacher/b{l}`.
    pub fn new(p: &TeacherParams, seed: u64) -> Teacher {
        let seeds = SeedStream::new(seed).child("data").child("teacher");
        let mut dims = vec![p.input_dim];
        dims.extend(std::iter::repeat_n(p.width, p.depth));
        dims.push(p.outputs);
        let weights = dims
            .windows(2)
            .enumerate()
            .map(|(l, w)| seeds.gaussian_matrix(&format!("w{}", l + 1), w[1], w[0], 1.0))
            .collect();
        let biases = dims[1..]
            .iter()
            .enumerate()
            .map(|(l, &n)| seeds.gaussian_vec(&format!("b{}", l + 1), n, 1.0))
            .collect();
        Teacher {
            weights,
            biases,
            activation: p.activation,
            w_std: p.w_std,
            b_std: p.b_std,
        }
    }

    /// `f(X)` for a batch `X` (`B × n₀`): `B × outputs`.
    pub fn forward(&self, x: &Mat<f64>) -> Mat<f64> {
        let mut a = x.clone();
        let last = self.weights.len() - 1;
        for (l, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            let scale = self.w_std / (w.ncols() as f64).sqrt();
            let mut h = gemm::matmul_nt(&a, w);
            h *= scale;
            for (j, &bj) in b.iter().enumerate() {
                h.column_mut(j).add_scalar_mut(self.b_std * bj);
            }
            if l < last {
                self.activation.apply_slice(h.as_mut_slice());
            }
            a = h;
        }
        a
    }
}

fn draw_inputs(p: &TeacherParams, n: usize, seeds: &SeedStream, name: &str) -> Mat<f64> {
    let d = p.input_dim;
    let mut rng = seeds.rng(name);
    // row-major draws (sample by sample) so earlier samples do not depend on n
    let mut v = vec![0f64; n * d];
    match p.input {
        InputDistribution::Gaussian | InputDistribution::Sphere => {
            for row in v.chunks_mut(d) {
                rng::fill_gaussian(&mut rng, row, 1.0);
                if p.input == InputDistribution::Sphere {
                    let norm = row.iter().map(|z| z * z).sum::<f64>().sqrt();
                    let s = if norm > 0.0 {
                        (d as f64).sqrt() / norm
                    } else {
                        1.0
                    };
                    row.iter_mut().for_each(|z| *z *= s);
                }
            }
        }
        InputDistribution::Uniform => {
            let r = 3f64.sqrt();
            for z in v.iter_mut() {
                *z = (2.0 * rng::uniform(&mut rng) - 1.0) * r;
            }
        }
    }
    Mat::from_row_slice(n, d, &v)
}

fn noisy(mut y: Mat<f64>, sigma: f64, seeds: &SeedStream, name: &str) -> Mat<f64> {
    if sigma > 0.0 {
        let e: Mat<f64> = seeds.gaussian_matrix(name, y.nrows(), y.ncols(), sigma);
        y += e;
    }
    y
}

/// Generates the teacher–student task: `(train, test)` regression splits, seeded.
pub fn teacher_task(p: &TeacherParams, seed: u64) -> Result<(Tabular, Tabular)> {
    p.validate()?;
    let teacher = Teacher::new(p, seed);
    let seeds = SeedStream::new(seed).child("data").child("teacher");
    let xtr = draw_inputs(p, p.train, &seeds, "x_train");
    let xte = draw_inputs(p, p.test, &seeds, "x_test");
    let ytr = noisy(teacher.forward(&xtr), p.noise, &seeds, "noise_train");
    let yte = teacher.forward(&xte);
    let yte = if p.noisy_test {
        noisy(yte, p.noise, &seeds, "noise_test")
    } else {
        yte
    };
    let f = |m: Mat<f64>| m.map(|v| v as f32);
    Ok((
        Tabular::regression(f(xtr), f(ytr))?,
        Tabular::regression(f(xte), f(yte))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_targets_match_direct_computation() {
        let p = AddParams::default();
        let (tr, te) = add_task(&p, 11).unwrap();
        assert_eq!((tr.len(), te.len(), tr.steps()), (300, 100, 100));
        for s in [&tr, &te] {
            for i in 0..s.len() {
                // direct: 1-based t, x_s = 0 for s < 1
                let xs: Vec<f64> = (1..=100).map(|t| s.x[t - 1][(i, 0)] as f64).collect();
                let xat = |t: i64| if t >= 1 { xs[(t - 1) as usize] } else { 0.0 };
                for t in 1..=100i64 {
                    let want = 0.5 + 0.5 * xat(t - 2) - 0.25 * xat(t - 5);
                    assert_eq!(s.y[(t - 1) as usize][(i, 0)] as f64, want, "seq {i} t {t}");
                }
            }
        }
        // binary, roughly balanced inputs
        let ones: f32 = tr.x.iter().map(|m| m.sum()).sum();
        let frac = ones / 30_000.0;
        assert!((frac - 0.5).abs() < 0.02, "{frac}");
        assert!(tr.x.iter().all(|m| m.iter().all(|&v| v == 0.0 || v == 1.0)));
    }

    #[test]
    fn reference_targets_wrap_around_and_have_the_stated_floor() {
        let p = AddParams {
            train: 8,
            test: 4000,
            wrap: true,
            ..AddParams::default()
        };
        let (tr, te) = add_task(&p, 3).unwrap();
        let steps = p.steps;
        let x = |s: &Sequences, i: usize, t: usize| s.x[t][(i, 0)] as f64;
        // test sequences: steps 0 and 1 read the last inputs (np.roll), no sequence is zeroed
        for i in 0..5 {
            for t in 0..steps {
                let want = 0.5 + 0.5 * x(&te, i, (t + steps - 2) % steps)
                    - 0.25 * x(&te, i, (t + steps - 5) % steps);
                assert_eq!(te.y[t][(i, 0)] as f64, want, "test seq {i} step {t}");
            }
        }
        // training sequences 0, 1 lose both terms, 2..4 the second one (rows, not steps, zeroed)
        for t in 0..steps {
            assert_eq!(tr.y[t][(0, 0)], 0.5);
            assert_eq!(
                tr.y[t][(3, 0)] as f64,
                0.5 + 0.5 * x(&tr, 3, (t + steps - 2) % steps)
            );
        }
        // the same inputs as the task's own definition: only the targets differ
        let (plain, _) = add_task(
            &AddParams {
                wrap: false,
                ..p.clone()
            },
            3,
        )
        .unwrap();
        assert_eq!(plain.x, tr.x);
        // the best causal predictor replaces unseen inputs by their mean, 1/2: its loss on 4000
        // test sequences is the floor 0.203125 up to sampling error (sd about 0.002)
        let floor = add_wrap_floor(&p);
        assert!((floor - 0.203125).abs() < 1e-15);
        let mut loss = 0.0;
        for i in 0..p.test {
            for t in 0..steps {
                let seen = |d: usize| if t >= d { x(&te, i, t - d) } else { 0.5 };
                let pred = 0.5 + 0.5 * seen(2) - 0.25 * seen(5);
                loss += (te.y[t][(i, 0)] as f64 - pred).powi(2);
            }
        }
        loss /= p.test as f64;
        assert!((loss - floor).abs() < 0.01, "{loss} vs {floor}");
        assert_eq!(
            add_wrap_floor(&AddParams::default()),
            floor,
            "wrap does not change the formula"
        );
    }

    #[test]
    fn add_is_seeded_and_prefix_stable() {
        let p = AddParams::default();
        let (a, _) = add_task(&p, 1).unwrap();
        let (b, _) = add_task(&p, 1).unwrap();
        let (c, _) = add_task(&p, 2).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let small = AddParams { train: 10, ..p };
        let (s, _) = add_task(&small, 1).unwrap();
        assert_eq!(s, a.select(&(0..10).collect::<Vec<_>>()));
    }

    #[test]
    fn add_validation() {
        for p in [
            AddParams {
                steps: 0,
                ..AddParams::default()
            },
            AddParams {
                train: 0,
                ..AddParams::default()
            },
            AddParams {
                p: 1.5,
                ..AddParams::default()
            },
            AddParams {
                steps: 1 << 30,
                ..AddParams::default()
            },
        ] {
            assert!(matches!(
                add_task(&p, 0),
                Err(DataError::InvalidOption { .. })
            ));
        }
    }

    #[test]
    fn teacher_forward_matches_a_direct_loop() {
        let p = TeacherParams {
            input_dim: 3,
            depth: 2,
            width: 5,
            outputs: 2,
            activation: Activation::Tanh,
            w_std: 1.3,
            b_std: 0.2,
            train: 4,
            test: 3,
            ..TeacherParams::default()
        };
        let t = Teacher::new(&p, 9);
        let (tr, te) = teacher_task(&p, 9).unwrap();
        assert_eq!(
            (tr.len(), te.len(), tr.input_dim(), tr.output_dim()),
            (4, 3, 3, 2)
        );
        for i in 0..4 {
            let mut a: Vec<f64> = (0..3).map(|j| tr.x[(i, j)] as f64).collect();
            for (l, (w, b)) in t.weights.iter().zip(&t.biases).enumerate() {
                let mut h: Vec<f64> = (0..w.nrows())
                    .map(|r| {
                        let s: f64 = (0..w.ncols()).map(|c| w[(r, c)] * a[c]).sum();
                        1.3 * s / (w.ncols() as f64).sqrt() + 0.2 * b[r]
                    })
                    .collect();
                if l < 2 {
                    h.iter_mut().for_each(|v| *v = v.tanh());
                }
                a = h;
            }
            for o in 0..2 {
                assert!(
                    (tr.y[(i, o)] as f64 - a[o]).abs() < 1e-5,
                    "{} vs {}",
                    tr.y[(i, o)],
                    a[o]
                );
            }
        }
    }

    #[test]
    fn teacher_noise_and_inputs() {
        let base = TeacherParams {
            width: 32,
            train: 200,
            test: 200,
            ..TeacherParams::default()
        };
        let (clean, _) = teacher_task(&base, 4).unwrap();
        let (noisy_tr, noisy_te) = teacher_task(
            &TeacherParams {
                noise: 0.5,
                ..base.clone()
            },
            4,
        )
        .unwrap();
        assert_eq!(clean.x, noisy_tr.x);
        let resid: Vec<f64> = (0..200)
            .map(|i| (noisy_tr.y[(i, 0)] - clean.y[(i, 0)]) as f64)
            .collect();
        let var = resid.iter().map(|r| r * r).sum::<f64>() / 200.0;
        assert!((var - 0.25).abs() < 0.08, "noise variance {var}");
        let (_, clean_te) = teacher_task(&base, 4).unwrap();
        assert_eq!(noisy_te.y, clean_te.y);
        let sphere = TeacherParams {
            input: InputDistribution::Sphere,
            ..base.clone()
        };
        let (s, _) = teacher_task(&sphere, 4).unwrap();
        for i in 0..200 {
            let r2: f32 = (0..16).map(|j| s.x[(i, j)].powi(2)).sum();
            assert!((r2 - 16.0).abs() < 1e-3);
        }
        let uni = TeacherParams {
            input: InputDistribution::Uniform,
            ..base
        };
        let (u, _) = teacher_task(&uni, 4).unwrap();
        assert!(u.x.iter().all(|v| v.abs() <= 3f32.sqrt()));
    }
}
