//! GGUF value and tensor types, with the numeric ids of the GGUF v3 specification.

use std::fmt;

macro_rules! ggml_types {
    ($($name:ident = $id:literal, $block:literal, $bytes:literal;)*) => {
        /// A ggml tensor element type: its id, block size (elements) and block size in bytes.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum GgmlType { $($name,)* }

        impl GgmlType {
            pub const ALL: &'static [GgmlType] = &[$(GgmlType::$name,)*];

            pub fn from_id(id: u32) -> Option<Self> {
                match id { $($id => Some(GgmlType::$name),)* _ => None }
            }
            pub fn id(self) -> u32 {
                match self { $(GgmlType::$name => $id,)* }
            }
            /// Elements per block.
            pub fn block_size(self) -> u64 {
                match self { $(GgmlType::$name => $block,)* }
            }
            /// Bytes per block.
            pub fn type_size(self) -> u64 {
                match self { $(GgmlType::$name => $bytes,)* }
            }
            pub fn name(self) -> &'static str {
                match self { $(GgmlType::$name => stringify!($name),)* }
            }
        }
    };
}

// Ids and sizes as in ggml.h / gguf-py's GGML_QUANT_SIZES. Types that this project does not
// (de)quantize are still listed so that any valid file can be read and inspected.
ggml_types! {
    F32 = 0, 1, 4;
    F16 = 1, 1, 2;
    Q4_0 = 2, 32, 18;
    Q4_1 = 3, 32, 20;
    Q5_0 = 6, 32, 22;
    Q5_1 = 7, 32, 24;
    Q8_0 = 8, 32, 34;
    Q8_1 = 9, 32, 36;
    Q2_K = 10, 256, 84;
    Q3_K = 11, 256, 110;
    Q4_K = 12, 256, 144;
    Q5_K = 13, 256, 176;
    Q6_K = 14, 256, 210;
    Q8_K = 15, 256, 292;
    IQ2_XXS = 16, 256, 66;
    IQ2_XS = 17, 256, 74;
    IQ3_XXS = 18, 256, 98;
    IQ1_S = 19, 256, 50;
    IQ4_NL = 20, 32, 18;
    IQ3_S = 21, 256, 110;
    IQ2_S = 22, 256, 82;
    IQ4_XS = 23, 256, 136;
    I8 = 24, 1, 1;
    I16 = 25, 1, 2;
    I32 = 26, 1, 4;
    I64 = 27, 1, 8;
    F64 = 28, 1, 8;
    IQ1_M = 29, 256, 56;
    BF16 = 30, 1, 2;
    TQ1_0 = 34, 256, 54;
    TQ2_0 = 35, 256, 66;
    MXFP4 = 39, 32, 17;
}

impl GgmlType {
    /// Bytes taken by a row of `n` elements, or `None` if `n` is not a multiple of the block size.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        if !n.is_multiple_of(self.block_size()) {
            return None;
        }
        (n / self.block_size()).checked_mul(self.type_size())
    }

    /// Parse a name such as `q4_k`, `Q8_0` or `f16` (case-insensitive).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type tag of a metadata value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Size in bytes of a scalar of this type; strings and arrays are variable.
    pub fn scalar_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The smallest encoding of one value of this type (used to bound counts before allocating).
    pub fn min_encoded_size(self) -> usize {
        match self {
            ValueType::String => 8,
            ValueType::Array => 12,
            t => t.scalar_size().unwrap_or(1),
        }
    }

    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "UINT8",
            I8 => "INT8",
            U16 => "UINT16",
            I16 => "INT16",
            U32 => "UINT32",
            I32 => "INT32",
            F32 => "FLOAT32",
            Bool => "BOOL",
            String => "STRING",
            Array => "ARRAY",
            U64 => "UINT64",
            I64 => "INT64",
            F64 => "FLOAT64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A typed GGUF metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(ArrayValue),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetadataValue {
    pub fn value_type(&self) -> ValueType {
        use MetadataValue as V;
        match self {
            V::U8(_) => ValueType::U8,
            V::I8(_) => ValueType::I8,
            V::U16(_) => ValueType::U16,
            V::I16(_) => ValueType::I16,
            V::U32(_) => ValueType::U32,
            V::I32(_) => ValueType::I32,
            V::F32(_) => ValueType::F32,
            V::Bool(_) => ValueType::Bool,
            V::String(_) => ValueType::String,
            V::Array(..) => ValueType::Array,
            V::U64(_) => ValueType::U64,
            V::I64(_) => ValueType::I64,
            V::F64(_) => ValueType::F64,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// Any integer type that fits in u64 (llama.cpp accepts several widths for some keys).
    pub fn as_u64(&self) -> Option<u64> {
        use MetadataValue as V;
        match *self {
            V::U8(v) => Some(v.into()),
            V::U16(v) => Some(v.into()),
            V::U32(v) => Some(v.into()),
            V::U64(v) => Some(v),
            V::I8(v) => u64::try_from(v).ok(),
            V::I16(v) => u64::try_from(v).ok(),
            V::I32(v) => u64::try_from(v).ok(),
            V::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        use MetadataValue as V;
        match *self {
            V::I8(v) => Some(v.into()),
            V::I16(v) => Some(v.into()),
            V::I32(v) => Some(v.into()),
            V::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            MetadataValue::F32(v) => Some(v),
            MetadataValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetadataValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&ArrayValue> {
        match self {
            MetadataValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A string array from `items`.
    pub fn string_array<I, S>(items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MetadataValue::Array(ArrayValue::String(
            items.into_iter().map(Into::into).collect(),
        ))
    }

    /// A short human-readable rendering, arrays abbreviated (for `inspect`).
    pub fn display_short(&self, max_items: usize) -> String {
        use MetadataValue as V;
        match self {
            V::String(s) => {
                let mut t: String = s.chars().take(60).collect();
                if s.chars().count() > 60 {
                    t.push_str("...");
                }
                format!("{t:?}")
            }
            V::Array(a) => a.display_short(max_items),
            V::U8(v) => v.to_string(),
            V::I8(v) => v.to_string(),
            V::U16(v) => v.to_string(),
            V::I16(v) => v.to_string(),
            V::U32(v) => v.to_string(),
            V::I32(v) => v.to_string(),
            V::F32(v) => v.to_string(),
            V::Bool(v) => v.to_string(),
            V::U64(v) => v.to_string(),
            V::I64(v) => v.to_string(),
            V::F64(v) => v.to_string(),
        }
    }
}

/// A homogeneous GGUF array, stored compactly (a 128k-entry token-type array is 512 KiB, not
/// 128k enum values), which also bounds memory by the file size.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayValue {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<ArrayValue>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

macro_rules! for_each_array {
    ($a:expr, $v:ident => $body:expr) => {
        match $a {
            ArrayValue::U8($v) => $body,
            ArrayValue::I8($v) => $body,
            ArrayValue::U16($v) => $body,
            ArrayValue::I16($v) => $body,
            ArrayValue::U32($v) => $body,
            ArrayValue::I32($v) => $body,
            ArrayValue::F32($v) => $body,
            ArrayValue::Bool($v) => $body,
            ArrayValue::String($v) => $body,
            ArrayValue::Array($v) => $body,
            ArrayValue::U64($v) => $body,
            ArrayValue::I64($v) => $body,
            ArrayValue::F64($v) => $body,
        }
    };
}

impl ArrayValue {
    pub fn elem_type(&self) -> ValueType {
        match self {
            ArrayValue::U8(_) => ValueType::U8,
            ArrayValue::I8(_) => ValueType::I8,
            ArrayValue::U16(_) => ValueType::U16,
            ArrayValue::I16(_) => ValueType::I16,
            ArrayValue::U32(_) => ValueType::U32,
            ArrayValue::I32(_) => ValueType::I32,
            ArrayValue::F32(_) => ValueType::F32,
            ArrayValue::Bool(_) => ValueType::Bool,
            ArrayValue::String(_) => ValueType::String,
            ArrayValue::Array(_) => ValueType::Array,
            ArrayValue::U64(_) => ValueType::U64,
            ArrayValue::I64(_) => ValueType::I64,
            ArrayValue::F64(_) => ValueType::F64,
        }
    }

    pub fn len(&self) -> usize {
        for_each_array!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_strings(&self) -> Option<&[String]> {
        match self {
            ArrayValue::String(v) => Some(v),
            _ => None,
        }
    }

    /// Integer elements widened to i64 (token types are INT32 in llama.cpp's files, but
    /// other writers use other widths).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match self {
            ArrayValue::U8(v) => v.iter().map(|&x| x.into()).collect(),
            ArrayValue::I8(v) => v.iter().map(|&x| x.into()).collect(),
            ArrayValue::U16(v) => v.iter().map(|&x| x.into()).collect(),
            ArrayValue::I16(v) => v.iter().map(|&x| x.into()).collect(),
            ArrayValue::U32(v) => v.iter().map(|&x| x.into()).collect(),
            ArrayValue::I32(v) => v.iter().map(|&x| x.into()).collect(),
            ArrayValue::I64(v) => v.clone(),
            ArrayValue::U64(v) => v.iter().map(|&x| x as i64).collect(),
            _ => return None,
        })
    }

    /// Numeric elements widened to f64 (token scores are F32 in llama.cpp's files).
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        Some(match self {
            ArrayValue::F32(v) => v.iter().map(|&x| x.into()).collect(),
            ArrayValue::F64(v) => v.clone(),
            _ => self.to_i64_vec()?.into_iter().map(|x| x as f64).collect(),
        })
    }

    pub fn display_short(&self, max_items: usize) -> String {
        fn show<T: fmt::Debug>(v: &[T], max: usize) -> String {
            let shown: Vec<String> = v.iter().take(max).map(|x| format!("{x:?}")).collect();
            let more = if v.len() > max { ", ..." } else { "" };
            format!("[{}{}]", shown.join(", "), more)
        }
        for_each_array!(self, v => show(v, max_items))
    }
}

/// Ordered GGUF metadata (key order is preserved so that files round-trip byte for byte).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, MetadataValue)>,
}

impl Metadata {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    /// Insert or replace (a replaced key keeps its position).
    pub fn set(&mut self, key: impl Into<String>, value: MetadataValue) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((key, value)),
        }
    }
    pub fn remove(&mut self, key: &str) -> Option<MetadataValue> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetadataValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub(crate) fn push_unchecked(&mut self, key: String, value: MetadataValue) {
        self.entries.push((key, value));
    }
}

/// Name, shape, type and data offset (relative to the data section) of one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (row) dimension.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    pub offset: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Size of the tensor's data in bytes (the dims were validated when read).
    pub fn n_bytes(&self) -> u64 {
        let row = self.dims.first().copied().unwrap_or(1);
        let rows: u64 = self.dims.iter().skip(1).product();
        self.ggml_type.row_bytes(row).unwrap_or(0) * rows
    }
}
