//! Plain backprop on the embedded digits: the reference configuration of issue 3.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release -p widealign-models --example digits_backprop
//! RAYON_NUM_THREADS=2 cargo run --release -p widealign-models --example digits_backprop
//! cargo run --release -p widealign-models --example digits_backprop -- WIDTH DEPTH LR EPOCHS SEED
//! ```
//!
//! Defaults: width 1024, depth 2 (hidden layers), ReLU, NTK parameterisation (`s_w = 1`,
//! `s_b = 0.1`), zero-initialised biases, MSE on one-hot − 0.1 targets (mean over batch and
//! outputs), plain SGD with lr 5.0, batch 100, 40 epochs, seed 0. Training uses the 1,442-image
//! training split, the 355-image test split is evaluated after every epoch. Each epoch visits
//! the training set in the order `epoch_order(n, SeedStream::new(seed).child("shuffle"), epoch)`
//! (the order the rules driver uses). Prints per-epoch losses and test accuracy, and a bit-level
//! fingerprint of the final weights so runs with different thread counts can be compared.

use widealign_data::{dataset::Batch, digits, preprocess};
use widealign_models::{
    accuracy, backward_signals_into, gradients_into, Feedback, Grads, Loss, Mlp, MlpSpec, Pathway,
    Signals, Trace,
};
use widealign_tensor::{rng::SeedStream, Activation, Mat};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let width: usize = arg(0, "1024").parse()?;
    let depth: usize = arg(1, "2").parse()?;
    let lr: f32 = arg(2, "5.0").parse()?;
    let epochs: usize = arg(3, "40").parse()?;
    let seed: u64 = arg(4, "0").parse()?;
    let batch_size = 100;

    let (train, test) = digits::load()?;
    let test_labels = test
        .labels
        .clone()
        .ok_or("digits test split has no labels")?;
    let spec = MlpSpec::uniform(
        train.input_dim(),
        width,
        depth,
        train.output_dim(),
        Activation::Relu,
    );
    let mut net = Mlp::<f32>::new(&spec, seed)?;
    println!(
        "digits: {} train / {} test, MLP {:?}, lr {lr}, batch {batch_size}, {epochs} epochs, seed {seed}, {} threads",
        train.len(),
        test.len(),
        spec.widths(),
        rayon::current_num_threads()
    );
    let evaluate = |net: &Mlp<f32>| -> Result<(f64, f64), Box<dyn std::error::Error>> {
        let out = net.predict(&test.x)?;
        Ok((
            Loss::Mse.evaluate(&out, &test.y)?.0,
            accuracy(&out, &test_labels)?,
        ))
    };
    let (l0, a0) = evaluate(&net)?;
    println!("epoch 0: test loss {l0:.6}, test accuracy {a0:.4}");
    let shuffles = SeedStream::new(seed).child("shuffle");
    let (mut trace, mut sig, mut grads) = (
        Trace::zeros(&spec, batch_size),
        Signals::new(),
        Grads::new(),
    );
    let mut err = Mat::zeros(0, 0);
    let mut batch = Batch::default();
    let start = std::time::Instant::now();
    for epoch in 1..=epochs {
        let order = preprocess::epoch_order(train.len(), &shuffles, epoch);
        let mut loss_sum = 0.0;
        for rows in preprocess::batches(&order, batch_size) {
            train.batch_into(rows, &mut batch);
            net.forward_into(&batch.x, &mut trace)?;
            loss_sum +=
                Loss::Mse.evaluate_into(trace.output(), &batch.y, &mut err)? * rows.len() as f64;
            let p = Pathway {
                feedback: Feedback::Weights(&net.weights),
                derivatives: &trace,
            };
            backward_signals_into(&spec, &p, &err, &mut sig);
            gradients_into(&spec, &sig, &trace, &mut grads);
            net.apply_update(&grads, lr);
        }
        let (tl, ta) = evaluate(&net)?;
        println!(
            "epoch {epoch}: train loss {:.6}, test loss {tl:.6}, test accuracy {ta:.4}",
            loss_sum / train.len() as f64
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    let (tl, ta) = evaluate(&net)?;
    // FNV-1a over the bits of every parameter: equal fingerprints mean bit-identical weights.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in net.params() {
        for v in p {
            for b in v.to_bits().to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    println!("final: test loss {tl:.9}, test accuracy {ta:.6}, weights fingerprint {h:016x}, training {seconds:.2} s");
    Ok(())
}
