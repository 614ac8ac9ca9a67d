//! Loads a dataset and prints its shape and the wall time of the load, for measuring the
//! loaders' speed and memory (run under `/usr/bin/time -v` for the peak resident memory):
//!
//! ```text
//! cargo run --release -p widealign-data --example load_dataset -- fashion-mnist
//! cargo run --release -p widealign-data --example load_dataset -- --train-images /usr/share/datasets/fashion-mnist
//! ```
//!
//! `--train-images DIR` reads only `DIR/train-images-idx3-ubyte[.gz]` (the training set's
//! pixels, as the model sees them).

use std::process::ExitCode;
use std::time::Instant;

use widealign_data::{idx, load, registry, LoadOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let start = Instant::now();
    let result = match args.as_slice() {
        [flag, dir] if flag == "--train-images" => {
            let dir = std::path::Path::new(dir);
            match registry::find_idx_file(dir, registry::IDX_FILES[0]) {
                None => {
                    eprintln!("{}: no train-images-idx3-ubyte[.gz]", dir.display());
                    return ExitCode::from(2);
                }
                Some(path) => idx::read_images(&path).map(|im| {
                    format!(
                        "{}: {} x {} f32 ({:.1} MB)",
                        path.display(),
                        im.x.nrows(),
                        im.x.ncols(),
                        (im.x.len() * 4) as f64 / 1e6
                    )
                }),
            }
        }
        [name] => load(name, &LoadOptions::default()).map(|d| {
            format!(
                "{}: train {} test {} input_dim {} classes {:?} (from {})",
                d.name,
                d.train.len(),
                d.test.len(),
                d.input_dim(),
                d.classes(),
                d.source
            )
        }),
        _ => {
            eprintln!("usage: load_dataset NAME | load_dataset --train-images DIR");
            return ExitCode::from(2);
        }
    };
    let secs = start.elapsed().as_secs_f64();
    match result {
        Ok(line) => {
            println!("{line}");
            println!("load time: {secs:.3} s");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
