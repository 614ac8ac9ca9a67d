//! Downloading MNIST, Fashion-MNIST and KMNIST (cargo feature `download`).
//!
//! [`fetch`] puts a dataset's four IDX `.gz` files into `DATA_DIR/NAME` (see
//! [`data_dir`](crate::data_dir())), where [`load`](crate::load()) then finds it. For each file:
//!
//! 1. a file already present with the expected SHA-256 is kept and not downloaded again (a file
//!    present with another checksum is an error: it is never overwritten);
//! 2. otherwise the bytes go to `NAME.part`; if that exists from an interrupted run, the request
//!    asks for the rest (`Range: bytes=K-`) and appends — a server that answers `200` instead
//!    of `206` restarts the file from zero;
//! 3. the completed `.part` is checked against the SHA-256 and only then renamed into place; on a
//!    mismatch it is deleted and the next mirror is tried.
//!
//! Mirrors are tried in order. A progress bar (indicatif) is drawn on standard error when
//! [`FetchOptions::progress`] is set and standard error is a terminal.
//!
//! ```no_run
//! use widealign_data::{download, LoadOptions};
//! let report = download::fetch("fashion-mnist", &LoadOptions::default(), &download::FetchOptions::default()).unwrap();
//! println!("{} files downloaded into {}", report.downloaded.len(), report.dir.display());
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::registry::{data_dir, LoadOptions};

/// One file of a remote dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// The file name, appended to a mirror's base URL and used in the destination folder.
    pub name: String,
    /// The expected SHA-256, lowercase hex.
    pub sha256: String,
}

/// A dataset that can be downloaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// The dataset name (also the destination subfolder).
    pub dataset: String,
    /// Base URLs ending in `/`, tried in order.
    pub mirrors: Vec<String>,
    /// The files.
    pub files: Vec<RemoteFile>,
}

/// The names [`remote`] knows.
pub const FETCHABLE: [&str; 3] = ["mnist", "fashion-mnist", "kmnist"];

fn files(list: [(&str, &str); 4]) -> Vec<RemoteFile> {
    list.iter()
        .map(|(n, h)| RemoteFile {
            name: n.to_string(),
            sha256: h.to_string(),
        })
        .collect()
}

/// The canonical hosts and checksums of a downloadable dataset.
pub fn remote(name: &str) -> Option<Remote> {
    let (mirrors, list): (&[&str], _) = match name {
        "mnist" => (
            &[
                "https://yann.lecun.com/exdb/mnist/",
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
            ],
            [
                (
                    "train-images-idx3-ubyte.gz",
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                ),
            ],
        ),
        "fashion-mnist" => (
            &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
            [
                (
                    "train-images-idx3-ubyte.gz",
                    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                ),
            ],
        ),
        "kmnist" => (
            &["https://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
            [
                (
                    "train-images-idx3-ubyte.gz",
                    "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
                ),
            ],
        ),
        _ => return None,
    };
    Some(Remote {
        dataset: name.to_string(),
        mirrors: mirrors.iter().map(|s| s.to_string()).collect(),
        files: files(list),
    })
}

/// How to download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    /// Draw a progress bar on standard error (only when it is a terminal).
    pub progress: bool,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout for each read of the response body.
    pub read_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            progress: true,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// What [`fetch`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// The dataset folder.
    pub dir: PathBuf,
    /// Files downloaded in this call.
    pub downloaded: Vec<String>,
    /// Files whose download continued a partial file from an earlier call.
    pub resumed: Vec<String>,
    /// Files that were already present with the right checksum.
    pub already_present: Vec<String>,
}

/// The SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let name = path.display().to_string();
    let mut f = File::open(path).map_err(|e| DataError::io(&name, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(&name, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Downloads the named dataset (one of [`FETCHABLE`]) into `data_dir(opts)/NAME`.
pub fn fetch(name: &str, opts: &LoadOptions, fetch_opts: &FetchOptions) -> Result<FetchReport> {
    let remote = remote(name).ok_or_else(|| {
        DataError::option(
            "dataset",
            format!(
                "{name:?} cannot be downloaded; expected one of {}",
                FETCHABLE.join(", ")
            ),
        )
    })?;
    let dir = data_dir(opts).ok_or_else(|| {
        DataError::option(
            "data_dir",
            "no data folder: set WIDEALIGN_DATA (HOME is unset too)",
        )
    })?;
    fetch_remote(&remote, &dir.join(name), fetch_opts)
}

enum Attempt {
    Done { resumed: bool },
    Failed(String),
}

/// Downloads every file of `remote` into `dest` (created if needed).
pub fn fetch_remote(remote: &Remote, dest: &Path, opts: &FetchOptions) -> Result<FetchReport> {
    fs::create_dir_all(dest).map_err(|e| DataError::io(dest.display().to_string(), e))?;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(opts.connect_timeout)
        .timeout_read(opts.read_timeout)
        .build();
    let mut report = FetchReport {
        dir: dest.to_path_buf(),
        ..FetchReport::default()
    };
    for file in &remote.files {
        let target = dest.join(&file.name);
        if target.exists() {
            let have = sha256_file(&target)?;
            if have == file.sha256 {
                report.already_present.push(file.name.clone());
                continue;
            }
            return Err(DataError::Download {
                url: target.display().to_string(),
                message: format!(
                    "already exists with SHA-256 {have}, expected {}; remove it to download again",
                    file.sha256
                ),
            });
        }
        let part = dest.join(format!("{}.part", file.name));
        let mut failures = Vec::new();
        let mut done = false;
        for mirror in &remote.mirrors {
            let url = format!("{mirror}{}", file.name);
            match attempt(&agent, &url, &part, &file.sha256, opts.progress) {
                Ok(Attempt::Done { resumed }) => {
                    fs::rename(&part, &target)
                        .map_err(|e| DataError::io(target.display().to_string(), e))?;
                    report.downloaded.push(file.name.clone());
                    if resumed {
                        report.resumed.push(file.name.clone());
                    }
                    done = true;
                    break;
                }
                Ok(Attempt::Failed(why)) => failures.push(format!("{url}: {why}")),
                Err(e) => return Err(e),
            }
        }
        if !done {
            return Err(DataError::Download {
                url: file.name.clone(),
                message: failures.join("; "),
            });
        }
    }
    Ok(report)
}

/// One try at one URL. Network and checksum problems are `Ok(Failed)`, so the next mirror is
/// tried; local file-system errors are `Err`.
fn attempt(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    sha256: &str,
    progress: bool,
) -> Result<Attempt> {
    let part_name = part.display().to_string();
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url).set("Accept-Encoding", "identity");
    if have > 0 {
        req = req.set("Range", &format!("bytes={have}-"));
    }
    let (resp, append) = match req.call() {
        Ok(r) if r.status() == 206 => {
            let expect = format!("bytes {have}-");
            let ok = r
                .header("Content-Range")
                .is_some_and(|v| v.starts_with(&expect));
            if !ok {
                return Ok(Attempt::Failed(format!(
                    "partial response without a matching Content-Range (asked for {expect}…)"
                )));
            }
            (Some(r), true)
        }
        Ok(r) if r.status() == 200 => (Some(r), false),
        Ok(r) => return Ok(Attempt::Failed(format!("HTTP status {}", r.status()))),
        // the partial file may already be complete
        Err(ureq::Error::Status(416, _)) if have > 0 => (None, true),
        Err(ureq::Error::Status(code, _)) => {
            return Ok(Attempt::Failed(format!("HTTP status {code}")))
        }
        Err(e) => return Ok(Attempt::Failed(e.to_string())),
    };
    let resumed = append && have > 0;
    if let Some(resp) = resp {
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(part)
            .map_err(|e| DataError::io(&part_name, e))?;
        let start = if append { have } else { 0 };
        let total = resp
            .header("Content-Length")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|n| n + start);
        let bar = if progress {
            let b = indicatif::ProgressBar::new(total.unwrap_or(0));
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
            b.set_position(start);
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut reader = resp.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.flush().map_err(|e| DataError::io(&part_name, e))?;
                    bar.abandon();
                    return Ok(Attempt::Failed(format!(
                        "connection lost ({e}); the partial file is kept and the next run resumes it"
                    )));
                }
            };
            out.write_all(&buf[..n])
                .map_err(|e| DataError::io(&part_name, e))?;
            bar.inc(n as u64);
        }
        out.flush().map_err(|e| DataError::io(&part_name, e))?;
        bar.finish_and_clear();
    }
    let got = sha256_file(part)?;
    if got != sha256 {
        fs::remove_file(part).map_err(|e| DataError::io(&part_name, e))?;
        return Ok(Attempt::Failed(format!(
            "SHA-256 mismatch: got {got}, expected {sha256}; the partial file was deleted"
        )));
    }
    Ok(Attempt::Done { resumed })
}
