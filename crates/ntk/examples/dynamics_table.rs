//! The width table of docs/theory.md §4.4: relative errors of closed-form predictions for finite
//! networks trained with full-batch gradient descent, and their log-log slopes.
//!
//! `cargo run --release -p widealign-ntk --example dynamics_table -- [erf,relu] [64,256,1024,4096] [steps] [lr] [f32|f64] [repeats]`
//!
//! Data: the teacher–student task of widealign-data (defaults: 16-dimensional Gaussian inputs,
//! relu teacher with 2 hidden layers of 512), 64 training and 256 test points, seed 0; the
//! student has 2 hidden layers (as `widealign dynamics --dataset teacher --train-size 64 --depth 2
//! --steps 200 --lr 0.1 --seed 0`).
use std::time::Instant;

use widealign_data::synthetic::teacher_task;
use widealign_data::TeacherParams;
use widealign_models::MlpSpec;
use widealign_ntk::experiment::{dynamics_experiment, DynamicsConfig, Precision, RegressionData};
use widealign_tensor::{Activation, Mat};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let acts = args.get(1).map_or("erf,relu", String::as_str);
    let widths: Vec<usize> = args
        .get(2)
        .map_or("64,256,1024,4096", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let steps: u64 = args.get(3).map_or(Ok(200), |s| s.parse())?;
    let lr: f64 = args.get(4).map_or(Ok(0.1), |s| s.parse())?;
    let precision = match args.get(5).map_or("f32", String::as_str) {
        "f64" => Precision::F64,
        _ => Precision::F32,
    };
    let repeats: usize = args.get(6).map_or(Ok(1), |s| s.parse())?;
    let params = TeacherParams {
        train: 64,
        test: 256,
        ..TeacherParams::default()
    };
    let (train, test) = teacher_task(&params, 0)?;
    let f = |m: &Mat<f32>| m.map(|v| v as f64);
    let data = RegressionData {
        x_train: f(&train.x),
        y_train: f(&train.y),
        x_test: f(&test.x),
    };
    for act in acts.split(',') {
        let act: Activation = act.parse()?;
        // 2 hidden layers (set to each width in turn), s_w = 1, s_b = 0.1, zero biases
        let student = MlpSpec::uniform(params.input_dim, 64, 2, params.outputs, act);
        let mut config = DynamicsConfig::new(student, widths.clone(), steps, lr, 0);
        config.precision = precision;
        config.repeats = repeats;
        let start = Instant::now();
        let r = dynamics_experiment(&config, &data)?;
        eprintln!("{act}: {:.1} s", start.elapsed().as_secs_f64());
        println!("{}", serde_json::to_string(&r)?);
        print!("{}", r.markdown_table());
        println!("(max stable lr {:.4})", r.max_stable_lr);
    }
    Ok(())
}
