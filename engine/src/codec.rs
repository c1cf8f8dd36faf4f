//! The one place that knows the wire and storage encoding: bincode 2.0.1 through serde.
//!
//! Everything that crosses a network or reaches a disk is encoded here, so the format can be
//! pinned by golden vectors (see the tests) and swapped in one spot.

use serde::{de::DeserializeOwned, Serialize};

/// The largest message or record we will decode. A hostile length prefix beyond it is an error
/// before anything is allocated.
pub const MAX_DECODE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(String),
    #[error("decode: {0}")]
    Decode(String),
    #[error("decode: {0} trailing bytes after the value")]
    Trailing(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<MAX_DECODE_BYTES>()
}

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// How many bytes [`encode`] would write for `value`, counted without writing them.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, CodecError> {
    let mut counter = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut counter, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(counter.bytes_written)
}

/// Decodes exactly one value; trailing bytes are an error. Hashes are never taken over received
/// bytes, only over [`encode`]'s canonical output, so a non-minimal varint cannot fork an id.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if read != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - read));
    }
    Ok(value)
}

/// Decodes the value at the start of `bytes` and ignores the rest: for reading the leading
/// field of a record this node stored itself (a stored block's header) without decoding the
/// whole record. Never for received bytes, where [`decode`]'s exactness is the point.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    bincode::serde::decode_from_slice(bytes, config())
        .map(|(value, _)| value)
        .map_err(|e| CodecError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_decodes_the_leading_value_of_a_record() {
        let record = (7u64, "header".to_string(), vec![9u8; 1_000]);
        let bytes = encode(&record).unwrap();
        assert_eq!(decode_prefix::<u64>(&bytes).unwrap(), 7);
        assert_eq!(
            decode_prefix::<(u64, String)>(&bytes).unwrap(),
            (7, "header".to_string())
        );
        assert!(
            decode::<(u64, String)>(&bytes).is_err(),
            "decode stays exact"
        );
        assert!(decode_prefix::<(u64, String)>(&bytes[..3]).is_err());
    }

    #[test]
    fn the_counted_length_is_the_encoded_length() {
        let values: Vec<(u64, Option<Vec<u8>>, String)> = vec![
            (0, None, String::new()),
            (250, Some(vec![1; 300]), "x".repeat(70_000)),
            (u64::MAX, Some(vec![]), "é".into()),
        ];
        for v in values {
            assert_eq!(encoded_len(&v).unwrap(), encode(&v).unwrap().len(), "{v:?}");
        }
    }

    #[test]
    fn huge_length_prefix_is_an_error_not_an_allocation() {
        // A vector claiming u64::MAX elements.
        let bytes = [0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }
}
