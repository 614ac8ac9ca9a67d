//! Memory of a wide MLP and its training state: computed from the shapes and measured.
//!
//! ```text
//! cargo run --release -p widealign-models --example memory -- [WIDTH] [DEPTH] [BATCH]
//! /usr/bin/time -v target/release/examples/memory 8192 3 100
//! ```
//!
//! Builds an f32 MLP with `DEPTH` hidden layers of `WIDTH` units (784 inputs, 10 outputs, NTK
//! parameterisation, ReLU), runs one forward pass keeping the trace at batch `BATCH`, then the
//! backward signals and the gradients. Prints the bytes each part needs according to its shape
//! and the process's resident set size (`VmRSS`, `VmHWM` from `/proc/self/status`) after each
//! stage.

use widealign_models::{backward_signals, gradients, Feedback, Loss, Mlp, MlpSpec, Pathway};
use widealign_tensor::{rng::SeedStream, Activation, Float, Mat};

fn status(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .map(|l| l[key.len()..].trim().to_string())
        })
        .unwrap_or_else(|| "n/a".into())
}

fn report(stage: &str) {
    println!(
        "{stage:<28} VmRSS {:>14}   VmHWM {:>14}",
        status("VmRSS:"),
        status("VmHWM:")
    );
}

fn mb(bytes: usize) -> String {
    format!("{bytes} B = {:.1} MB", bytes as f64 / 1e6)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("arguments are WIDTH DEPTH BATCH (integers): {e}"))?;
    let width = args.first().copied().unwrap_or(8192);
    let depth = args.get(1).copied().unwrap_or(3);
    let batch = args.get(2).copied().unwrap_or(100);
    let spec = MlpSpec::uniform(784, width, depth, 10, Activation::Relu);
    let widths = spec.widths();
    let bytes = f32::BYTES;
    let params = spec.parameter_count() * bytes;
    let trace =
        batch * (widths[0] + 2 * widths[1..widths.len() - 1].iter().sum::<usize>() + 10) * bytes;
    let signals = batch * widths[1..].iter().sum::<usize>() * bytes;
    let input = batch * 784 * bytes;
    println!("MLP 784 -> {width} x {depth} -> 10, f32, batch {batch}");
    println!(
        "computed: parameters {} ({} values)",
        mb(params),
        spec.parameter_count()
    );
    println!(
        "computed: trace (pre-activations + activities) {}",
        mb(trace)
    );
    println!("computed: parameters + trace {}", mb(params + trace));
    println!(
        "computed: backward signals {}, gradients {}",
        mb(signals),
        mb(params)
    );
    println!(
        "computed: training-step total (params + input + trace + signals + grads) {}",
        mb(params + input + trace + signals + params)
    );
    report("start");
    let net = Mlp::<f32>::new(&spec, 0)?;
    report("after init");
    let s = SeedStream::new(1);
    let x: Mat<f32> = s.gaussian_matrix("x", batch, 784, 1.0);
    let y: Mat<f32> = s.gaussian_matrix("y", batch, 10, 1.0);
    let t = net.forward(&x)?;
    report("after forward (trace)");
    let (loss, err) = Loss::Mse.evaluate(t.output(), &y)?;
    let p = Pathway {
        feedback: Feedback::Weights(&net.weights),
        derivatives: &t,
    };
    let sig = backward_signals(&spec, &p, &err);
    report("after backward signals");
    let g = gradients(&spec, &sig, &t);
    report("after gradients");
    println!("loss {loss:.6}, gradient norm² {:.6e}", g.norm_squared());
    Ok(())
}
