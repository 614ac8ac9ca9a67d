//! `widealign data list | info | fetch`.

use widealign_data::LoadOptions;

use crate::cli::DataCommand;
use crate::emit;
use crate::error::CliError;
use crate::progress::Progress;

/// Runs a `data` subcommand.
pub fn run(cmd: &DataCommand, progress: &Progress) -> Result<(), CliError> {
    let _ = progress;
    let opts = LoadOptions::default();
    match cmd {
        DataCommand::List { json } => {
            let entries = widealign_data::list(&opts);
            if *json {
                let v = serde_json::json!({ "datasets": entries });
                return emit(&v.to_string());
            }
            let mut out = String::new();
            for e in &entries {
                let status = match (e.found, &e.path) {
                    (Some(true), Some(p)) => format!("found: {p}"),
                    (Some(true), None) => "available".to_string(),
                    (Some(false), _) => format!("not found (looked in {})", e.locations.join(", ")),
                    (None, _) => "give a path".to_string(),
                };
                out.push_str(&format!("{:<14} {:<10} {status}\n", e.name, e.kind));
                out.push_str(&format!("{:<14} {}\n", "", e.description));
            }
            emit(out.trim_end())
        }
        DataCommand::Info { name, json } => {
            let info = widealign_data::info(name, &opts)?;
            if *json {
                return emit(
                    &serde_json::to_string(&info).map_err(|e| CliError::Failure(e.to_string()))?,
                );
            }
            let mut lines = vec![
                format!("name        {}", info.name),
                format!("path        {}", info.path),
                format!("train       {}", info.train),
                format!("test        {}", info.test),
                format!("input_dim   {}", info.input_dim),
                format!("output_dim  {}", info.output_dim),
            ];
            if let Some(c) = info.classes {
                lines.push(format!("classes     {c}"));
            }
            if let Some(t) = info.steps {
                lines.push(format!("steps       {t}"));
            }
            if let Some(c) = &info.credit {
                lines.push(format!("credit      {c}"));
            }
            emit(&lines.join("\n"))
        }
        #[cfg(feature = "download")]
        DataCommand::Fetch { name, dir } => {
            let opts = LoadOptions {
                data_dir: dir.clone(),
                ..LoadOptions::default()
            };
            let fopts = widealign_data::download::FetchOptions {
                progress: progress.mode() == crate::progress::Mode::Bars,
                ..Default::default()
            };
            // `fetch NAME [--dir DIR]`: the dataset is the NAME argument, the folder is --dir
            let r = widealign_data::download::fetch(name, &opts, &fopts).map_err(|e| {
                CliError::from_data(e, |field| match field {
                    "dataset" => "NAME".to_string(),
                    "data_dir" => "--dir".to_string(),
                    other => crate::error::field_to_flag(other),
                })
            })?;
            emit(&format!(
                "{name}: {} downloaded, {} resumed, {} already present, in {}",
                r.downloaded.len(),
                r.resumed.len(),
                r.already_present.len(),
                r.dir.display()
            ))
        }
    }
}
