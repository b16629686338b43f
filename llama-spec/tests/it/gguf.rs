//! GGUF reader/writer against the real SmolLM2 file and gguf-py's dequantization.

use crate::common;

use llama_spec::gguf::{
    ArrayValue, FormatError, GgmlType, GgufFile, GgufWriter, Metadata, MetadataValue, TensorSpec,
};
use llama_spec::quant;
use sha2::{Digest, Sha256};

#[test]
fn reads_smollm2_like_gguf_py() {
    let f = GgufFile::open(common::smollm2()).expect("open");
    assert_eq!(f.header.version, 3);
    assert_eq!(f.tensors().len(), 272);
    assert_eq!(f.metadata().len(), 33);
    assert_eq!(f.get_str("general.architecture").expect("arch"), "llama");
    assert_eq!(f.header.alignment, 32);
    let tokens = f
        .get("tokenizer.ggml.tokens")
        .and_then(MetadataValue::as_array)
        .and_then(ArrayValue::as_strings)
        .expect("tokens");
    assert_eq!(tokens.len(), 49152);
    assert_eq!(tokens[1], "<|im_start|>");
    let q = f.tensor("blk.0.attn_q.weight").expect("attn_q");
    assert_eq!(
        (q.dims.as_slice(), q.ggml_type),
        (&[576u64, 576][..], GgmlType::Q4_1)
    );
    assert_eq!(f.tensor_data(q).len(), 576 * 576 / 32 * 20);
}

/// Every tensor, dequantized to F32, hashes to what gguf-py's `dequantize` produced
/// (tests/fixtures/smollm2_dequant_sha256.json, made by make_quant_fixtures.py).
#[test]
fn every_smollm2_tensor_dequantizes_like_gguf_py() {
    let f = GgufFile::open(common::smollm2()).expect("open");
    let text =
        std::fs::read_to_string(common::fixture("smollm2_dequant_sha256.json")).expect("fixture");
    let expected: serde_json::Value = serde_json::from_str(&text).expect("json");
    let expected = expected.as_object().expect("object");
    assert_eq!(expected.len(), f.tensors().len());
    let mut buf = Vec::new();
    for t in f.tensors() {
        let e = &expected[&t.name];
        assert_eq!(e["type"].as_str(), Some(t.ggml_type.name()), "{}", t.name);
        let n = t.n_elements() as usize;
        assert_eq!(e["n"].as_u64(), Some(n as u64));
        buf.resize(n, 0f32);
        quant::dequantize(t.ggml_type, f.tensor_data(t), &mut buf).expect("dequantize");
        let mut h = Sha256::new();
        for x in &buf {
            h.update(x.to_le_bytes());
        }
        let got = format!("{:x}", h.finalize());
        assert_eq!(Some(got.as_str()), e["sha256_f32le"].as_str(), "{}", t.name);
    }
}

#[test]
fn read_write_read_is_byte_identical() {
    let src = GgufFile::open(common::smollm2()).expect("open");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("copy.gguf");
    let specs: Vec<TensorSpec> = src.tensors().iter().map(TensorSpec::from).collect();
    let mut w = GgufWriter::create(&out, src.metadata(), &specs).expect("create");
    assert!(!out.exists(), "nothing appears before finish()");
    for t in src.tensors() {
        // Stream in uneven chunks: the writer must not care how data arrives.
        for chunk in src.tensor_data(t).chunks(100_003) {
            w.write_data(chunk).expect("write");
        }
    }
    w.finish().expect("finish");
    let a = std::fs::read(common::smollm2()).expect("read original");
    let b = std::fs::read(&out).expect("read copy");
    assert_eq!(a.len(), b.len());
    assert!(
        a == b,
        "first difference at byte {:?}",
        a.iter().zip(&b).position(|(x, y)| x != y)
    );
    let again = GgufFile::open(&out).expect("reopen");
    assert_eq!(again.header, src.header);
}

#[test]
fn writer_rejects_wrong_sizes_and_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("x.gguf");
    let specs = [TensorSpec {
        name: "a".into(),
        dims: vec![32, 2],
        ggml_type: GgmlType::Q8_0,
    }];
    let mut w = GgufWriter::create(&out, &Metadata::new(), &specs).expect("create");
    assert!(w.write_data(&[0u8; 69]).is_err(), "68 bytes expected");
    w.write_data(&[0u8; 34]).expect("half");
    let err = w.finish().unwrap_err().to_string();
    assert!(err.contains("x.gguf") && err.contains("34 of 68"), "{err}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("ls").count(),
        0,
        "temp file removed"
    );
    let bad = [TensorSpec {
        name: "b".into(),
        dims: vec![33],
        ggml_type: GgmlType::Q4_0,
    }];
    assert!(GgufWriter::create(&out, &Metadata::new(), &bad).is_err());
}

#[test]
fn errors_name_the_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("trunc.gguf");
    let bytes = std::fs::read(common::smollm2()).expect("read");
    std::fs::write(&p, &bytes[..1_000_000]).expect("write");
    let err = GgufFile::open(&p).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("trunc.gguf") && msg.contains("byte offset"),
        "{msg}"
    );
    assert!(
        matches!(
            err.format_error(),
            Some(FormatError::Truncated { .. } | FormatError::CountTooLarge { .. })
        ),
        "{msg}"
    );
    // Header intact but the data cut short.
    std::fs::write(&p, &bytes[..bytes.len() - 1000]).expect("write");
    let err = GgufFile::open(&p).unwrap_err();
    assert!(
        matches!(
            err.format_error(),
            Some(FormatError::DataOutOfBounds { .. })
        ),
        "{err}"
    );
    let missing = GgufFile::open(dir.path().join("nope.gguf"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.gguf"), "{missing}");
}
