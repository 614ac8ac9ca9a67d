//! Checkpoint round trips and every kind of broken file.

use std::path::Path;

use widealign_models::{
    checkpoint::MAX_HEADER_BYTES, inspect_checkpoint, BiasInit, Mlp, MlpSpec, ModelError,
    Parameterization, Rnn, RnnSpec,
};
use widealign_tensor::{rng::SeedStream, Activation};

fn mlp<T: widealign_tensor::Float>() -> Mlp<T> {
    let spec = MlpSpec::new(5, vec![7, 3], 4, Activation::Gelu)
        .with_param(Parameterization::Standard {
            w_std: 1.7,
            b_std: 0.123456789,
        })
        .with_bias_init(BiasInit::Gaussian);
    Mlp::new(&spec, 12345).unwrap()
}

fn rnn() -> Rnn<f32> {
    let spec = RnnSpec::new(2, 6, 3, Activation::Relu).with_bias_init(BiasInit::Gaussian);
    let mut net = Rnn::new(&spec, 9).unwrap();
    net.r0 = SeedStream::new(3).gaussian_vec("r0", 6, 1.0);
    net
}

fn bits<T: widealign_tensor::Float>(params: Vec<&[T]>) -> Vec<u64> {
    params
        .iter()
        .flat_map(|p| p.iter().map(|v| v.as_f64().to_bits()))
        .collect()
}

/// The checkpoint error message, which must name the file.
fn err_msg(e: ModelError, path: &Path) -> String {
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name the file: {msg}"
    );
    msg
}

#[test]
fn round_trips_are_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.ckpt");
    let net32 = mlp::<f32>();
    net32.save(&p).unwrap();
    let back = Mlp::<f32>::load(&p).unwrap();
    assert_eq!(back, net32);
    assert_eq!(bits(back.params()), bits(net32.params()));
    let info = inspect_checkpoint(&p).unwrap();
    assert_eq!(
        (info.kind.as_str(), info.dtype.as_str(), info.seed),
        ("mlp", "f32", 12345)
    );
    assert!(info.header.contains("b_std=0.123456789"), "{}", info.header);

    let net64 = mlp::<f64>();
    net64.save(&p).unwrap();
    assert_eq!(Mlp::<f64>::load(&p).unwrap(), net64);

    // a linear model (no hidden layers)
    let lin = Mlp::<f32>::new(&MlpSpec::new(3, vec![], 2, Activation::Identity), 1).unwrap();
    lin.save(&p).unwrap();
    assert_eq!(Mlp::<f32>::load(&p).unwrap(), lin);

    let r = rnn();
    r.save(&p).unwrap();
    let back = Rnn::<f32>::load(&p).unwrap();
    assert_eq!(back, r);
    assert_eq!(bits(back.params()), bits(r.params()));
}

#[test]
fn every_truncation_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("full.ckpt");
    mlp::<f32>().save(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let q = dir.path().join("cut.ckpt");
    for len in 0..bytes.len() {
        std::fs::write(&q, &bytes[..len]).unwrap();
        let msg = err_msg(Mlp::<f32>::load(&q).unwrap_err(), &q);
        assert!(
            msg.contains("truncated") || msg.contains("header"),
            "length {len}: {msg}"
        );
    }
    // trailing garbage is rejected too
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0, 1, 2]);
    std::fs::write(&q, &longer).unwrap();
    assert!(err_msg(Mlp::<f32>::load(&q).unwrap_err(), &q).contains("3 trailing bytes"));
}

#[test]
fn corrupted_payload_and_header_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.ckpt");
    mlp::<f64>().save(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let q = dir.path().join("bad.ckpt");
    // flip one bit in the last payload byte
    let mut b = bytes.clone();
    *b.last_mut().unwrap() ^= 0x10;
    std::fs::write(&q, &b).unwrap();
    assert!(err_msg(Mlp::<f64>::load(&q).unwrap_err(), &q).contains("checksum"));
    // flip every single byte of the preamble and header: always an error, never a panic
    let header_end = 16 + u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    for i in 0..header_end {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        std::fs::write(&q, &b).unwrap();
        assert!(
            Mlp::<f64>::load(&q).is_err(),
            "byte {i} flipped was accepted"
        );
    }
    // garbage and a missing file
    std::fs::write(&q, vec![0x42u8; 1000]).unwrap();
    assert!(err_msg(Mlp::<f64>::load(&q).unwrap_err(), &q).contains("not a widealign checkpoint"));
    let missing = dir.path().join("missing.ckpt");
    assert!(matches!(
        Mlp::<f64>::load(&missing),
        Err(ModelError::Io { .. })
    ));
}

#[test]
fn mismatched_kind_dtype_version_and_oversized_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.ckpt");
    mlp::<f32>().save(&p).unwrap();
    assert!(
        err_msg(Mlp::<f64>::load(&p).unwrap_err(), &p).contains("holds f32 values, requested f64")
    );
    assert!(err_msg(Rnn::<f32>::load(&p).unwrap_err(), &p).contains("expected \"rnn\""));
    let r = dir.path().join("r.ckpt");
    rnn().save(&r).unwrap();
    assert!(err_msg(Mlp::<f32>::load(&r).unwrap_err(), &r).contains("expected \"mlp\""));

    let bytes = std::fs::read(&p).unwrap();
    let q = dir.path().join("v.ckpt");
    let mut b = bytes.clone();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    std::fs::write(&q, &b).unwrap();
    assert!(err_msg(Mlp::<f32>::load(&q).unwrap_err(), &q).contains("format version 2"));
    let mut b = bytes.clone();
    b[12..16].copy_from_slice(&(MAX_HEADER_BYTES + 1).to_le_bytes());
    std::fs::write(&q, &b).unwrap();
    assert!(err_msg(Mlp::<f32>::load(&q).unwrap_err(), &q).contains("exceeds"));
}

/// Rewrites the header text of a checkpoint (keeping the payload) and returns the load error.
fn with_header(src: &Path, dst: &Path, edit: impl Fn(&str) -> String) -> String {
    let bytes = std::fs::read(src).unwrap();
    let hl = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[16..16 + hl]).unwrap();
    let new = edit(header);
    let mut out = bytes[..12].to_vec();
    out.extend_from_slice(&(new.len() as u32).to_le_bytes());
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&bytes[16 + hl..]);
    std::fs::write(dst, out).unwrap();
    err_msg(Mlp::<f32>::load(dst).unwrap_err(), dst)
}

#[test]
fn headers_that_lie_are_rejected_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h.ckpt");
    mlp::<f32>().save(&p).unwrap();
    let q = dir.path().join("lie.ckpt");
    // an enormous model described over a tiny payload: refused from the sizes, nothing allocated
    let msg = with_header(&p, &q, |h| {
        h.replace("hidden=7,3", "hidden=4000000000,4000000000")
            .replace(
                "tensor=layer1.weight 7x5",
                "tensor=layer1.weight 4000000000x5",
            )
    });
    assert!(
        msg.contains("does not match") || msg.contains("overflow"),
        "{msg}"
    );
    // a consistent but huge description is refused by the payload size
    let msg = with_header(&p, &q, |h| h.replace("hidden=7,3", "hidden=7,300000"));
    assert!(msg.contains("does not match"), "{msg}");
    let msg = with_header(&p, &q, |h| h.replace("activation=gelu", "activation=swish"));
    assert!(msg.contains("swish"), "{msg}");
    let msg = with_header(&p, &q, |h| h.replace("w_std=1.7", "w_std=-1.7"));
    assert!(msg.contains("w_std"), "{msg}");
    let msg = with_header(&p, &q, |h| h.replace("hidden=7,3", "hidden=7,0"));
    assert!(msg.contains("hidden[1]"), "{msg}");
    let msg = with_header(&p, &q, |h| format!("seed=3\n{h}"));
    assert!(msg.contains("twice"), "{msg}");
    let msg = with_header(&p, &q, |h| format!("colour=blue\n{h}"));
    assert!(msg.contains("unknown key"), "{msg}");
    let msg = with_header(&p, &q, |h| format!("{h}seed=3\n"));
    assert!(msg.contains("checksum must be the last line"), "{msg}");
    // a plausible edit of a header value is caught by the checksum
    let msg = with_header(&p, &q, |h| h.replace("w_std=1.7", "w_std=1.2"));
    assert!(msg.contains("checksum"), "{msg}");
    let msg = with_header(&p, &q, |h| {
        h.lines()
            .filter(|l| !l.starts_with("output_dim"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    assert!(msg.contains("output_dim"), "{msg}");
    let msg = with_header(&p, &q, |h| {
        let bytes: usize = h
            .lines()
            .find_map(|l| l.strip_prefix("payload_bytes="))
            .unwrap()
            .parse()
            .unwrap();
        h.replace(
            &format!("payload_bytes={bytes}"),
            &format!("payload_bytes={}", bytes + 8),
        )
    });
    assert!(msg.contains("truncated"), "{msg}");
}
