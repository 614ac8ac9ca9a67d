//! `download` against a small HTTP server on 127.0.0.1 written here (no outside network):
//! SHA-256 verification, resume of partial files with `Range`, checksum failures, files
//! already present, and loading the result.
#![cfg(feature = "download")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flate2::{write::GzEncoder, Compression};
use widealign_data::download::{fetch_remote, sha256_file, FetchOptions, Remote, RemoteFile};
use widealign_data::{idx, load, DataError, LoadOptions};

/// A request as the server saw it: path and the `Range` header, if any.
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Serves `files` over HTTP/1.1 with `Range: bytes=K-` support. For paths in `cut`, the first
/// response announces the full length but sends only that many bytes, then closes. Serves at
/// most 40 connections, then stops.
fn serve(files: HashMap<String, Vec<u8>>, cut: HashMap<String, usize>) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let log2 = log.clone();
    std::thread::spawn(move || {
        let mut cut = cut;
        for stream in listener.incoming().take(40) {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let mut range = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("range") {
                        range = Some(v.trim().to_string());
                    }
                }
            }
            log2.lock().unwrap().push((path.clone(), range.clone()));
            let Some(body) = files.get(&path) else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|r| r.parse::<usize>().ok());
            let head = match start {
                Some(s) if s >= body.len() => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    continue;
                }
                Some(s) => format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len() - 1,
                    body.len(),
                    body.len() - s
                ),
                None => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()),
            };
            let from = start.unwrap_or(0);
            let to = match cut.remove(&path) {
                Some(n) => from + n,
                None => body.len(),
            };
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body[from..to]);
            let _ = stream.flush();
        }
    });
    (base, log)
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn sha(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, bytes).unwrap();
    sha256_file(&p).unwrap()
}

/// A generated MNIST-like dataset: file name → gzip bytes.
fn dataset() -> HashMap<String, Vec<u8>> {
    let img = |n: usize| {
        let px: Vec<u8> = (0..n * 49).map(|i| (i * 31 % 256) as u8).collect();
        let mut b = Vec::new();
        idx::write(&mut b, &[n, 7, 7], &px).unwrap();
        gz(&b)
    };
    let lab = |n: usize| {
        let mut b = Vec::new();
        idx::write(
            &mut b,
            &[n],
            &(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        gz(&b)
    };
    HashMap::from([
        ("train-images-idx3-ubyte.gz".to_string(), img(400)),
        ("train-labels-idx1-ubyte.gz".to_string(), lab(400)),
        ("t10k-images-idx3-ubyte.gz".to_string(), img(100)),
        ("t10k-labels-idx1-ubyte.gz".to_string(), lab(100)),
    ])
}

fn remote_for(base: &str, files: &HashMap<String, Vec<u8>>) -> Remote {
    let mut names: Vec<&String> = files.keys().collect();
    names.sort();
    Remote {
        dataset: "test".into(),
        mirrors: vec![base.to_string()],
        files: names
            .into_iter()
            .map(|n| RemoteFile {
                name: n.clone(),
                sha256: sha(&files[n]),
            })
            .collect(),
    }
}

fn quiet() -> FetchOptions {
    FetchOptions {
        progress: false,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
    }
}

#[test]
fn download_resume_verify_and_load() {
    let files = dataset();
    let big = "train-images-idx3-ubyte.gz".to_string();
    let half = files[&big].len() / 2;
    let (base, log) = serve(files.clone(), HashMap::from([(big.clone(), half)]));
    let remote = remote_for(&base, &files);
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("data/test");

    // first run: the connection drops halfway through the big file
    let e = fetch_remote(&remote, &dest, &quiet()).unwrap_err();
    assert!(matches!(e, DataError::Download { .. }), "{e}");
    assert!(e.to_string().contains("partial file is kept"), "{e}");
    let part = dest.join(format!("{big}.part"));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), half as u64);

    // second run: resumes with a Range request and verifies the checksum
    let r = fetch_remote(&remote, &dest, &quiet()).unwrap();
    assert_eq!(r.resumed, vec![big.clone()]);
    assert!(log
        .lock()
        .unwrap()
        .contains(&(big.clone(), Some(format!("bytes={half}-")))));
    assert!(!part.exists());
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(dest.join(name)).unwrap(), bytes, "{name}");
    }

    // third run: everything present, nothing requested
    let before = log.lock().unwrap().len();
    let r = fetch_remote(&remote, &dest, &quiet()).unwrap();
    assert_eq!(r.already_present.len(), 4);
    assert!(r.downloaded.is_empty());
    assert_eq!(log.lock().unwrap().len(), before);

    // and the folder is a dataset
    let d = load(&format!("idx:{}", dest.display()), &LoadOptions::default()).unwrap();
    assert_eq!((d.train.len(), d.test.len(), d.input_dim()), (400, 100, 49));
    let opts = LoadOptions {
        data_dir: Some(t.path().join("data")),
        ..LoadOptions::default()
    };
    assert!(widealign_data::registry::is_idx_dir(
        &widealign_data::data_dir(&opts).unwrap().join("test")
    ));
}

#[test]
fn checksum_mismatch_and_complete_partial_file() {
    let files = dataset();
    let (base, log) = serve(files.clone(), HashMap::new());
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("d");

    let mut bad = remote_for(&base, &files);
    bad.files.truncate(1);
    bad.files[0].sha256 = "00".repeat(32);
    let e = fetch_remote(&bad, &dest, &quiet()).unwrap_err();
    assert!(e.to_string().contains("SHA-256 mismatch"), "{e}");
    assert!(!dest.join(&bad.files[0].name).exists());
    assert!(!dest.join(format!("{}.part", bad.files[0].name)).exists());

    // a partial file that is in fact complete: the server answers 416, the file is verified
    let good = remote_for(&base, &files);
    let name = &good.files[0].name;
    std::fs::write(dest.join(format!("{name}.part")), &files[name]).unwrap();
    let mut one = good.clone();
    one.files.truncate(1);
    let r = fetch_remote(&one, &dest, &quiet()).unwrap();
    assert_eq!(r.downloaded, vec![name.clone()]);
    assert_eq!(&std::fs::read(dest.join(name)).unwrap(), &files[name]);
    assert!(log
        .lock()
        .unwrap()
        .iter()
        .any(|(p, r)| p == name && r.is_some()));

    // a file present with a different checksum is never overwritten
    let other = &good.files[1].name;
    std::fs::write(dest.join(other), b"not it").unwrap();
    let e = fetch_remote(&good, &dest, &quiet()).unwrap_err();
    assert!(e.to_string().contains("remove it to download again"), "{e}");
    assert_eq!(std::fs::read(dest.join(other)).unwrap(), b"not it");

    // a missing file on the server
    let mut missing = good.clone();
    missing.files = vec![RemoteFile {
        name: "nope.gz".into(),
        sha256: "00".repeat(32),
    }];
    let e = fetch_remote(&missing, &dest, &quiet()).unwrap_err();
    assert!(e.to_string().contains("HTTP status 404"), "{e}");
}

#[test]
fn canonical_remotes_are_complete() {
    for name in widealign_data::download::FETCHABLE {
        let r = widealign_data::download::remote(name).unwrap();
        assert_eq!(r.files.len(), 4);
        assert!(r
            .files
            .iter()
            .all(|f| f.sha256.len() == 64 && f.sha256.chars().all(|c| c.is_ascii_hexdigit())));
        assert!(Path::new(&r.files[0].name)
            .extension()
            .is_some_and(|e| e == "gz"));
    }
    assert!(widealign_data::download::remote("cifar10").is_none());
}
