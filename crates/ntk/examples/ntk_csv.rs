//! The computation of `widealign ntk`, standalone (used by scripts/crosscheck before the CLI).
//!
//! `ntk_csv INPUTS.csv DEPTH ACTIVATION W_STD B_STD` prints {"nngp":..,"ntk":..,"seconds":..}
//! for DEPTH hidden layers and a scalar output, one input per CSV row.
use widealign_models::{BiasInit, MlpSpec, Parameterization};
use widealign_ntk::experiment::{analytic_ntk, NtkConfig};
use widealign_tensor::Mat;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        return Err("usage: ntk_csv INPUTS.csv DEPTH ACTIVATION W_STD B_STD".into());
    }
    let text = std::fs::read_to_string(&args[1])?;
    let mut data = Vec::new();
    let mut cols = 0;
    let mut rows = 0;
    for (ln, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let vals: Result<Vec<f64>, _> = line.split(',').map(|v| v.trim().parse::<f64>()).collect();
        let vals = vals.map_err(|e| format!("{}:{}: {e}", args[1], ln + 1))?;
        if rows > 0 && vals.len() != cols {
            return Err(format!("{}:{}: expected {cols} values", args[1], ln + 1).into());
        }
        cols = vals.len();
        rows += 1;
        data.extend(vals);
    }
    let x = Mat::from_row_slice(rows, cols, &data);
    // DEPTH hidden layers (their width does not enter the kernels), Gaussian biases
    let spec = MlpSpec::uniform(cols, 1, args[2].parse()?, 1, args[3].parse()?)
        .with_param(Parameterization::Ntk {
            w_std: args[4].parse()?,
            b_std: args[5].parse()?,
        })
        .with_bias_init(BiasInit::Gaussian);
    let cfg = NtkConfig::new(spec);
    println!("{}", serde_json::to_string(&analytic_ntk(&x, &cfg)?)?);
    Ok(())
}
