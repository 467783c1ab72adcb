//! The one place that encodes and decodes bytes that cross the network or reach the disk.
//!
//! Everything consentry persists or sends goes through `encode`/`decode`, so the
//! serialization crate (bincode 2.0.1 today, unmaintained upstream) can be swapped here.
//!
//! Every encoded value starts with two bytes: [`MAGIC`] and the format version
//! ([`FORMAT_VERSION`]). bincode is positional, so a change to the model changes what bytes
//! mean; the version says which model wrote them. A value from a newer format, from before
//! formats were numbered, or not from consentry at all is refused with an error that says
//! which, rather than misread. A release that changes the format raises the version, and
//! reads the versions it still supports by decoding them into the old types and converting.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest encoded value `decode` accepts: a bound on what a peer or a corrupt file can
/// make us allocate.
pub const DECODE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// First byte of every encoded value.
pub const MAGIC: u8 = 0xC5;
/// The format this build writes and reads. Raise it with any change to a persisted or sent
/// type (a field, a variant), and keep reading the old one until no supported release
/// writes it.
pub const FORMAT_VERSION: u8 = 2;
/// The oldest format this build reads.
pub const FORMAT_VERSION_OLDEST: u8 = 2;
/// Bytes before the value.
pub const HEADER_BYTES: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encoding value failed: {0}")]
    Encode(String),
    #[error("decoding value failed: {0}")]
    Decode(String),
    #[error("decoding value failed: {bytes} bytes left over after the value")]
    Trailing { bytes: usize },
    #[error(
        "the data has no consentry format header: it is not consentry's, or a release from \
         before format versions wrote it"
    )]
    NotVersioned,
    #[error(
        "the data is in format {found}, written by a newer consentry release; this release \
         reads formats {FORMAT_VERSION_OLDEST} to {FORMAT_VERSION}"
    )]
    NewerFormat { found: u8 },
    #[error(
        "the data is in format {found}, which this release no longer reads (it reads \
         {FORMAT_VERSION_OLDEST} to {FORMAT_VERSION}); upgrade through an intermediate release"
    )]
    OlderFormat { found: u8 },
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
    let mut out = vec![MAGIC, FORMAT_VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if out.len() - HEADER_BYTES > DECODE_BYTES_MAX {
        return Err(CodecError::Encode(format!(
            "the value is {} bytes; the limit is {DECODE_BYTES_MAX}",
            out.len() - HEADER_BYTES
        )));
    }
    Ok(out)
}

/// The format version of encoded bytes, checked against what this build reads.
///
/// # Errors
/// [`CodecError::NotVersioned`], [`CodecError::NewerFormat`], [`CodecError::OlderFormat`].
pub fn format_of(bytes: &[u8]) -> Result<u8, CodecError> {
    match bytes {
        [MAGIC, version, ..] if *version > FORMAT_VERSION => {
            Err(CodecError::NewerFormat { found: *version })
        }
        [MAGIC, version, ..] if *version < FORMAT_VERSION_OLDEST => {
            Err(CodecError::OlderFormat { found: *version })
        }
        [MAGIC, version, ..] => Ok(*version),
        _ => Err(CodecError::NotVersioned),
    }
}

/// Decodes one value that must fill `bytes` exactly.
///
/// # Errors
/// On malformed input, on input larger than `DECODE_BYTES_MAX`, or on trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    // Only one format exists so far; a second one would be decoded into its own types here.
    format_of(bytes)?;
    let body = &bytes[HEADER_BYTES..];
    let (value, used) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing {
            bytes: body.len() - used,
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

    #[test]
    fn every_value_names_its_format_and_other_formats_are_refused_by_name() {
        let b = encode(&42u64).unwrap();
        assert_eq!(&b[..HEADER_BYTES], &[MAGIC, FORMAT_VERSION]);
        assert_eq!(format_of(&b).unwrap(), FORMAT_VERSION);

        let mut newer = b.clone();
        newer[1] = FORMAT_VERSION + 1;
        let err = decode::<u64>(&newer).unwrap_err();
        assert!(matches!(err, CodecError::NewerFormat { .. }), "{err}");
        assert!(err.to_string().contains("newer consentry release"), "{err}");

        let mut older = b.clone();
        older[1] = FORMAT_VERSION_OLDEST - 1;
        assert!(matches!(
            decode::<u64>(&older),
            Err(CodecError::OlderFormat { found }) if found == FORMAT_VERSION_OLDEST - 1
        ));

        // Bytes from before the header (bare bincode), and empty input.
        let bare = bincode::serde::encode_to_vec(42u64, config()).unwrap();
        assert!(matches!(
            decode::<u64>(&bare),
            Err(CodecError::NotVersioned)
        ));
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::NotVersioned)));
        assert!(matches!(
            decode::<u64>(&[MAGIC]),
            Err(CodecError::NotVersioned)
        ));
    }
}
