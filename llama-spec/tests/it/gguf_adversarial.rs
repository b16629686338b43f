//! Truncated, bit-flipped and adversarial GGUF headers give typed errors: never a panic, never a
//! huge allocation. Runs a bounded proptest (fixed case count) in CI.

use llama_spec::gguf::{
    serialize_header, ArrayValue, FormatError, GgmlType, GgufHeader, Metadata, MetadataValue,
    TensorSpec,
};
use proptest::prelude::*;

/// A small but feature-complete file: every value type, nested and empty arrays, 3 tensors.
fn sample() -> Vec<u8> {
    let mut md = Metadata::new();
    md.set(
        "general.architecture",
        MetadataValue::String("llama".into()),
    );
    md.set("u8", MetadataValue::U8(7));
    md.set("i8", MetadataValue::I8(-7));
    md.set("u16", MetadataValue::U16(700));
    md.set("i16", MetadataValue::I16(-700));
    md.set("i32", MetadataValue::I32(-70000));
    md.set("f32", MetadataValue::F32(1.5));
    md.set("bool", MetadataValue::Bool(true));
    md.set("u64", MetadataValue::U64(1 << 40));
    md.set("i64", MetadataValue::I64(-(1 << 40)));
    md.set("f64", MetadataValue::F64(2.25));
    md.set("tokens", MetadataValue::string_array(["a", "bc", "日本"]));
    md.set(
        "types",
        MetadataValue::Array(ArrayValue::I32(vec![1, 3, 6])),
    );
    md.set("empty", MetadataValue::Array(ArrayValue::F32(vec![])));
    md.set(
        "nested",
        MetadataValue::Array(ArrayValue::Array(vec![
            ArrayValue::U8(vec![1, 2]),
            ArrayValue::Bool(vec![true]),
        ])),
    );
    let specs = [
        TensorSpec {
            name: "a".into(),
            dims: vec![32, 2],
            ggml_type: GgmlType::Q8_0,
        },
        TensorSpec {
            name: "b".into(),
            dims: vec![5],
            ggml_type: GgmlType::F32,
        },
        TensorSpec {
            name: "c".into(),
            dims: vec![256, 1, 1, 2],
            ggml_type: GgmlType::Q4_K,
        },
    ];
    let (mut bytes, infos) = serialize_header(&md, &specs).expect("header");
    let last = infos.last().expect("tensors");
    bytes.resize(bytes.len() + (last.offset + last.n_bytes()) as usize, 0xab);
    bytes
}

#[test]
fn sample_parses_and_round_trips() {
    let bytes = sample();
    let h = GgufHeader::parse(&bytes).expect("parse");
    assert_eq!(h.tensors.len(), 3);
    assert_eq!(h.metadata.len(), 15);
    let specs: Vec<TensorSpec> = h.tensors.iter().map(TensorSpec::from).collect();
    let (again, _) = serialize_header(&h.metadata, &specs).expect("serialize");
    assert_eq!(&bytes[..again.len()], &again[..]);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample();
    for n in 0..bytes.len() {
        assert!(
            GgufHeader::parse(&bytes[..n]).is_err(),
            "prefix of {n} bytes parsed"
        );
    }
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn huge_counts_are_rejected_before_allocating() {
    let base = sample();
    // tensor count, kv count
    for at in [8usize, 16] {
        let mut b = base.clone();
        put_u64(&mut b, at, u64::MAX / 2);
        let (_, e) = GgufHeader::parse(&b).unwrap_err();
        assert!(matches!(e, FormatError::CountTooLarge { .. }), "{e}");
    }
    // The first key's string length.
    let mut b = base.clone();
    put_u64(&mut b, 24, 1 << 62);
    let (off, e) = GgufHeader::parse(&b).unwrap_err();
    assert_eq!(off, 24);
    assert!(matches!(e, FormatError::CountTooLarge { .. }), "{e}");
    // Array length of "tokens": find its key, skip type tag (4), elem type (4).
    let pos = b"tokens";
    let at = base.windows(6).position(|w| w == pos).expect("key") + 6 + 4 + 4;
    let mut b = base.clone();
    put_u64(&mut b, at, u64::MAX);
    assert!(matches!(
        GgufHeader::parse(&b).unwrap_err().1,
        FormatError::CountTooLarge { .. }
    ));
}

#[test]
fn specific_header_corruptions() {
    let base = sample();
    let mut b = base.clone();
    b[0] = b'X';
    assert!(matches!(
        GgufHeader::parse(&b).unwrap_err().1,
        FormatError::BadMagic(_)
    ));
    let mut b = base.clone();
    b[4] = 2;
    assert!(matches!(
        GgufHeader::parse(&b).unwrap_err().1,
        FormatError::UnsupportedVersion(2)
    ));
    // Unknown value type of the first key.
    let key_len = u64::from_le_bytes(base[24..32].try_into().expect("8")) as usize;
    let mut b = base.clone();
    b[32 + key_len] = 99;
    assert!(matches!(
        GgufHeader::parse(&b).unwrap_err().1,
        FormatError::UnknownValueType(99)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random byte overwrites anywhere in the header never panic.
    #[test]
    fn mutated_headers_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut b = sample();
        let header_len = b.len() - 256; // mutate mostly the header
        for (i, v) in edits {
            let at = i.index(header_len);
            b[at] = v;
        }
        let _ = GgufHeader::parse(&b);
    }

    /// Single bit flips: parse or fail, never panic; a successful parse keeps every tensor in bounds.
    #[test]
    fn bit_flips_never_panic(bit in 0usize..(8 * 600)) {
        let mut b = sample();
        let at = (bit / 8) % b.len();
        b[at] ^= 1 << (bit % 8);
        if let Ok(h) = GgufHeader::parse(&b) {
            for t in &h.tensors {
                prop_assert!(h.data_offset + t.offset + t.n_bytes() <= b.len() as u64);
            }
        }
    }

    /// Arbitrary bytes after a valid magic and version.
    #[test]
    fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut b = b"GGUF\x03\0\0\0".to_vec();
        b.extend(body);
        let _ = GgufHeader::parse(&b);
    }
}
