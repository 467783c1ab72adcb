//! Length-prefixed frames: a 4-byte big-endian length, then that many codec bytes.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec;
use crate::transport::TransportError;

/// Largest frame body either side sends or accepts. Checked against the header before the
/// body is allocated, so a peer cannot make us reserve more than this per stream.
pub const FRAME_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Size of the big-endian length header.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Encodes `value` as a frame body, refusing one larger than [`FRAME_BYTES_MAX`].
pub(crate) fn encode_body<T: Serialize>(
    value: &T,
    what: &'static str,
) -> Result<Vec<u8>, TransportError> {
    let body = codec::encode(value).map_err(|source| TransportError::Encode { what, source })?;
    if body.len() > FRAME_BYTES_MAX {
        return Err(TransportError::FrameTooLarge {
            bytes: body.len() as u64,
        });
    }
    Ok(body)
}

/// Decodes a frame body.
pub(crate) fn decode_body<T: DeserializeOwned>(
    body: &[u8],
    what: &'static str,
) -> Result<T, TransportError> {
    codec::decode(body).map_err(|source| TransportError::Decode { what, source })
}

/// Writes one frame carrying `body` (from [`encode_body`]).
///
/// # Cancel safety
/// Not cancel safe: a cancelled write leaves a partial frame; reset or drop the stream.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &[u8],
) -> Result<(), TransportError> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|len| *len as usize <= FRAME_BYTES_MAX)
        .ok_or(TransportError::FrameTooLarge {
            bytes: body.len() as u64,
        })?;
    writer
        .write_all(&len.to_be_bytes())
        .await
        .map_err(TransportError::WriteFrame)?;
    writer
        .write_all(body)
        .await
        .map_err(TransportError::WriteFrame)
}

/// Reads one frame body. The announced length is checked against [`FRAME_BYTES_MAX`]
/// before anything is allocated for it.
///
/// # Cancel safety
/// Not cancel safe: a cancelled read leaves the stream mid-frame; drop the stream.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Vec<u8>, TransportError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    reader
        .read_exact(&mut header)
        .await
        .map_err(TransportError::ReadFrame)?;
    let announced = u32::from_be_bytes(header);
    let len = usize::try_from(announced)
        .ok()
        .filter(|len| *len <= FRAME_BYTES_MAX)
        .ok_or(TransportError::FrameTooLarge {
            bytes: u64::from(announced),
        })?;
    let mut body = vec![0u8; len];
    reader
        .read_exact(&mut body)
        .await
        .map_err(TransportError::ReadFrame)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn transport_frame_roundtrip() {
        let body = encode_body(&(7u64, "x".to_string()), "test value").unwrap();
        let mut wire = Vec::new();
        write_frame(&mut wire, &body).await.unwrap();
        assert_eq!(wire.len(), FRAME_HEADER_BYTES + body.len());
        let read = read_frame(&mut &wire[..]).await.unwrap();
        let value: (u64, String) = decode_body(&read, "test value").unwrap();
        assert_eq!(value, (7, "x".to_string()));
    }

    #[tokio::test]
    async fn transport_frame_oversized_header_is_rejected_before_the_body_is_read() {
        // Only the header is there: had the reader allocated and read the body, it would
        // have failed with an end-of-stream read error instead.
        for announced in [FRAME_BYTES_MAX as u32 + 1, u32::MAX] {
            let wire = announced.to_be_bytes();
            let err = read_frame(&mut &wire[..]).await.unwrap_err();
            assert!(
                matches!(err, TransportError::FrameTooLarge { bytes } if bytes == u64::from(announced)),
                "{err}"
            );
        }
        // The limit itself is allowed (and then the missing body is the error).
        let wire = (FRAME_BYTES_MAX as u32).to_be_bytes();
        let err = read_frame(&mut &wire[..]).await.unwrap_err();
        assert!(matches!(err, TransportError::ReadFrame(_)), "{err}");
    }

    #[tokio::test]
    async fn transport_frame_write_refuses_oversized_bodies() {
        let body = vec![0u8; FRAME_BYTES_MAX + 1];
        let mut wire = Vec::new();
        let err = write_frame(&mut wire, &body).await.unwrap_err();
        assert!(matches!(err, TransportError::FrameTooLarge { .. }), "{err}");
        assert!(wire.is_empty());
    }

    #[test]
    fn transport_frame_garbage_body_is_a_decode_error() {
        let err =
            decode_body::<crate::transport::RpcResponse>(&[0xff; 16], "response").unwrap_err();
        assert!(matches!(err, TransportError::Decode { .. }), "{err}");
    }
}
