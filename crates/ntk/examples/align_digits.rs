//! Alignment of backprop's weight changes with the predicted (Align-zero shadow) update on the
//! embedded digits, against width — the measurement behind `widealign align`, with a plain SGD
//! loop of the models crate standing in for the rules crate's training loop.
//!
//! `cargo run --release -p widealign-ntk --example align_digits -- [64,256,1024,4096] [epochs] [lr] [depth] [activation]`
//!
//! Plain SGD, batch 100, MSE on one-hot − 0.1 targets, NTK parameterisation (`s_w = 1`,
//! `s_b = 0.1`, zero initial biases), seed 0; batches reshuffled every epoch from the stream
//! `SeedStream::new(0).child("align-digits").rng("epoch{e}")`.
use std::time::Instant;

use widealign_models::{
    accuracy, backward_signals, gradients, Feedback, Loss, Mlp, MlpSpec, Pathway,
};
use widealign_ntk::align::{align_layers, AlignOptions, AlignReport, ShadowAccumulator};
use widealign_tensor::{rng, rng::SeedStream, Activation, Mat};

fn rows(m: &Mat<f32>, idx: &[usize]) -> Mat<f32> {
    Mat::from_fn(idx.len(), m.ncols(), |i, j| m[(idx[i], j)])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let widths: Vec<usize> = args
        .get(1)
        .map_or("64,256,1024,4096", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let epochs: usize = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let lr: f32 = args.get(3).map_or(Ok(1.0), |s| s.parse())?;
    let depth: usize = args.get(4).map_or(Ok(2), |s| s.parse())?;
    let act: Activation = args.get(5).map_or("relu", String::as_str).parse()?;
    let (train, test) = widealign_data::digits::load()?;
    let n = train.x.nrows();
    let batch = 100;
    let mut report = AlignReport::new();
    for &width in &widths {
        let start = Instant::now();
        let spec = MlpSpec::uniform(64, width, depth, 10, act);
        let net0 = Mlp::<f32>::new(&spec, 0)?;
        let mut net = net0.clone();
        let mut shadow = ShadowAccumulator::with_training_set(&net0, &train.x)?;
        let seeds = SeedStream::new(0).child("align-digits");
        for e in 0..epochs {
            let mut order: Vec<usize> = (0..n).collect();
            rng::shuffle(&mut seeds.rng(&format!("epoch{e}")), &mut order);
            for chunk in order.chunks(batch) {
                let xb = rows(&train.x, chunk);
                let yb = rows(&train.y, chunk);
                let trace = net.forward(&xb)?;
                let (_, err) = Loss::Mse.evaluate(trace.output(), &yb)?;
                shadow.observe_rows(chunk, &err, lr)?;
                let pathway = Pathway {
                    feedback: Feedback::Weights(&net.weights),
                    derivatives: &trace,
                };
                let g = gradients(&spec, &backward_signals(&spec, &pathway, &err), &trace);
                net.apply_update(&g, lr);
            }
        }
        let acc = accuracy(
            &net.predict(&test.x)?,
            test.labels.as_ref().expect("labels"),
        )?;
        let train_secs = start.elapsed().as_secs_f64();
        let layers = align_layers(&net0, &net, &shadow, &train.x, &AlignOptions::default())?;
        eprintln!(
            "width {width}: test accuracy {acc:.3}, training {train_secs:.1} s, alignment {:.1} s",
            start.elapsed().as_secs_f64() - train_secs
        );
        report.push(width, &layers)?;
    }
    println!("{}", serde_json::to_string(&report)?);
    println!("| layer | width | score | probe score | shuffled | random | input span |");
    println!("|---|---|---|---|---|---|---|");
    for s in &report.layers {
        for (i, w) in report.widths.iter().enumerate() {
            println!(
                "| {} | {w} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
                s.layer, s.score[i], s.probe_score[i], s.shuffled[i], s.random[i], s.input_span[i]
            );
        }
    }
    Ok(())
}
