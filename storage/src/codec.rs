//! The one place that encodes and decodes bytes that cross the network or reach the disk.
//!
//! Everything consentry persists or sends goes through `encode`/`decode`, so the
//! serialization crate (bincode 2.0.1 today, unmaintained upstream) can be swapped here.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest encoded value `decode` accepts: a bound on what a peer or a corrupt file can
/// make us allocate.
pub const DECODE_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encoding value failed: {0}")]
    Encode(String),
    #[error("decoding value failed: {0}")]
    Decode(String),
    #[error("decoding value failed: {bytes} bytes left over after the value")]
    Trailing { bytes: usize },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<DECODE_BYTES_MAX>()
}

/// Encodes `value`.
///
/// # Errors
/// When the value cannot be represented (serde error) or exceeds `DECODE_BYTES_MAX`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes one value that must fill `bytes` exactly.
///
/// # Errors
/// On malformed input, on input larger than `DECODE_BYTES_MAX`, or on trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing {
            bytes: bytes.len() - used,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_garbage() {
        let v: (u64, String, Vec<u8>) = (7, "x".into(), vec![1, 2, 3]);
        let b = encode(&v).unwrap();
        let back: (u64, String, Vec<u8>) = decode(&b).unwrap();
        assert_eq!(v, back);
        // Garbage must give an error, never a panic or a huge allocation.
        let garbage = [0xffu8; 32];
        assert!(decode::<(u64, String, Vec<u8>)>(&garbage).is_err());
        let mut trailing = b.clone();
        trailing.push(0);
        assert!(matches!(
            decode::<(u64, String, Vec<u8>)>(&trailing),
            Err(CodecError::Trailing { bytes: 1 })
        ));
    }
}
