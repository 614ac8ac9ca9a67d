//! The width table of docs/theory.md §4.5: relative errors of the closed-form predictions for
//! finite Elman networks trained with full-batch gradient descent through time, per weight matrix
//! (`W_in`, `W_rec`, `W_out`), and their log-log slopes.
//!
//! `cargo run --release -p widealign-ntk --example rnn_dynamics_table -- [erf] [64,256,1024] [steps] [lr] [repeats] [seq_len] [train] [w_std]`
//!
//! Data: the sequence teacher–student task of widealign-data (`teacher-seq`: 4 inputs per step,
//! tanh Elman teacher of width 256; defaults 32 training and 64 test sequences of 6 steps, seed
//! 0); the student is an Elman network with `s_w` = `w_std` (default 1), `s_b = 0.1`, zero initial
//! biases — with the defaults, as `widealign dynamics --model rnn --activation erf --lr 0.25`.
use std::time::Instant;

use widealign_data::synthetic::seq_teacher_task;
use widealign_data::SeqTeacherParams;
use widealign_models::{BiasInit, Parameterization, RnnSpec};
use widealign_ntk::experiment::{rnn_dynamics_experiment, DynamicsConfig, SequenceData};
use widealign_tensor::{Activation, Mat};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let acts = arg(1, "erf");
    let widths: Vec<usize> = arg(2, "64,256,1024")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let steps: u64 = arg(3, "200").parse()?;
    let lr: f64 = arg(4, "0.25").parse()?;
    let repeats: usize = arg(5, "1").parse()?;
    let params = SeqTeacherParams {
        steps: arg(6, "6").parse()?,
        train: arg(7, "32").parse()?,
        ..SeqTeacherParams::default()
    };
    let w_std: f64 = arg(8, "1").parse()?;
    let (train, test) = seq_teacher_task(&params, 0)?;
    let f = |ms: &[Mat<f32>]| ms.iter().map(|m| m.map(f64::from)).collect::<Vec<_>>();
    let data = SequenceData {
        x_train: f(&train.x),
        y_train: f(&train.y),
        x_test: f(&test.x),
    };
    for act in acts.split(',') {
        let act: Activation = act.parse()?;
        let student = RnnSpec::new(params.input_dim, 64, params.outputs, act)
            .with_param(Parameterization::Ntk { w_std, b_std: 0.1 })
            .with_bias_init(BiasInit::Zero);
        let mut config = DynamicsConfig::new(student, widths.clone(), steps, lr, 0);
        config.repeats = repeats;
        let start = Instant::now();
        let r = rnn_dynamics_experiment(&config, &data)?;
        eprintln!("{act}: {:.1} s", start.elapsed().as_secs_f64());
        println!("{}", serde_json::to_string(&r)?);
        print!("{}", r.markdown_table());
        println!("(max stable lr {:.4})", r.max_stable_lr);
    }
    Ok(())
}
