//! The CLI side of [`TrainConfig`], the complete description of one training run shared by
//! `train`, `sweep` and `reproduce`: building it from flags and checking it (a bad value is
//! named by its flag, `crate::error::field_to_flag`).
//!
//! [`TrainConfig`] is `widealign_rules::TrainConfig` itself (no copy, no conversion), and its
//! identity in results files is its derived serialisation (`widealign_experiments::config`).

use widealign_experiments::config;
use widealign_rules::{ModelKind, TrainConfig};

use crate::cli::{CnnArgs, DataArgs, ModelArgs, OptimArgs};
use crate::error::CliError;

/// The config described by the architecture, dataset and optimisation flags (rule and width
/// keep their defaults).
pub fn from_flags(model: &ModelArgs, data: &DataArgs, optim: &OptimArgs) -> TrainConfig {
    TrainConfig {
        model: model.model,
        dataset: data.dataset.clone(),
        depth: model.depth,
        activation: model.activation,
        param: model.param,
        optimizer: optim.optimizer,
        lr: optim.lr,
        batch_size: optim.batch_size,
        epochs: optim.epochs,
        train_size: data.train_size,
        w_std: model.w_std,
        b_std: model.b_std,
        seed: optim.seed,
        ..TrainConfig::default()
    }
}

/// The config with the CNN flags applied (unset ones keep their defaults).
///
/// # Errors
/// [`CliError`] naming the first CNN flag given with a model other than `cnn`.
pub fn with_cnn_flags(mut c: TrainConfig, cnn: &CnnArgs) -> Result<TrainConfig, CliError> {
    let given = [
        ("--channels", cnn.channels.is_some()),
        ("--conv-layers", cnn.conv_layers.is_some()),
        ("--kernel", cnn.kernel.is_some()),
        ("--stride", cnn.stride.is_some()),
        ("--padding", cnn.padding.is_some()),
        ("--readout", cnn.readout.is_some()),
        ("--norm", cnn.norm.is_some()),
    ];
    if c.model != ModelKind::Cnn {
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
            return Err(CliError::flag(
                flag,
                format!("applies to --model cnn only (the model is {})", c.model),
            ));
        }
    }
    match cnn.channels.as_ref().map(|w| w.0.as_slice()) {
        None => {}
        Some(&[one]) => c.channels = one,
        Some(_) => {
            return Err(CliError::flag(
                "--channels",
                "takes one channel count here (a list C,C,.. is for align)",
            ))
        }
    }
    c.conv_layers = cnn.conv_layers.unwrap_or(c.conv_layers);
    c.kernel = cnn.kernel.unwrap_or(c.kernel);
    c.stride = cnn.stride.unwrap_or(c.stride);
    c.padding = cnn.padding.unwrap_or(c.padding);
    c.readout = cnn.readout.unwrap_or(c.readout);
    c.norm = cnn.norm.unwrap_or(c.norm);
    Ok(c)
}

/// Checks a config built from flags; a bad value is reported with its flag.
pub fn validate(c: &TrainConfig) -> Result<(), CliError> {
    Ok(config::validate(c)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Every config key is a `train` flag, so a key named in an error is one the user can fix.
    #[test]
    fn every_config_key_is_a_train_flag() {
        use clap::CommandFactory;
        let cmd = crate::cli::Cli::command();
        let train = cmd.find_subcommand("train").unwrap();
        for key in config::fields() {
            let flag = key.replace('_', "-");
            assert!(
                train.get_arguments().any(|a| a.get_long() == Some(&flag)),
                "no --{flag}"
            );
        }
    }

    #[test]
    fn flags_build_the_config_and_bad_values_name_their_flag() {
        let cli = crate::cli::Cli::try_parse_from([
            "widealign",
            "train",
            "--batch-size",
            "0",
            "--train-size",
            "7",
        ])
        .unwrap();
        let crate::cli::Command::Train(a) = cli.command else {
            panic!("not train")
        };
        let c = from_flags(&a.model, &a.data, &a.optim);
        assert_eq!((c.batch_size, c.train_size), (0, Some(7)));
        let e = validate(&c).unwrap_err();
        assert!(e.to_string().starts_with("--batch-size: "), "{e}");
    }
}
