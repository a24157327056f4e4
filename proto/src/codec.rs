//! Encoding and decoding with the protocol's size limits.
//!
//! A payload is JSON, or gzip-compressed JSON (recognised by the gzip magic bytes, which no
//! JSON text starts with). No payload over [`MAX_MESSAGE_BYTES`] is sent or accepted, the
//! AWS IoT Core limit, so the same edge build can talk to AWS IoT Core as a plain broker.

use std::borrow::Cow;
use std::io::Read;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest MQTT payload Shiki sends or accepts (128 KiB).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// Largest JSON text a compressed payload may expand to (guards against gzip bombs).
pub const MAX_DECOMPRESSED_BYTES: usize = 16 * 1024 * 1024;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("payload of {size} bytes exceeds the {limit}-byte message limit")]
    TooLarge { size: usize, limit: usize },
    #[error("compressed payload expands past {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("compressed payload is not valid gzip: {0}")]
    BadCompression(#[source] std::io::Error),
    #[error("malformed JSON payload: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("message could not be serialised: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Serialises `msg` as JSON, refusing a result over [`MAX_MESSAGE_BYTES`].
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = serde_json::to_vec(msg).map_err(CodecError::Encode)?;
    check_size(bytes.len())?;
    Ok(bytes)
}

/// Serialises `msg`, gzip-compressing it when that makes it smaller. The result may still
/// be over the limit; the caller splits batches until it is not (see [`check_size`]).
pub fn encode_compressed<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let json = serde_json::to_vec(msg).map_err(CodecError::Encode)?;
    let best = gzip_if_smaller(json);
    check_size(best.len())?;
    Ok(best)
}

/// `json` gzip-compressed when that is smaller, else `json` itself.
pub(crate) fn gzip_if_smaller(json: Vec<u8>) -> Vec<u8> {
    let gz = gzip(&json);
    if gz.len() < json.len() { gz } else { json }
}

/// Size in bytes `msg` would have with [`encode_compressed`], without the limit check.
pub fn compressed_len<T: Serialize>(msg: &T) -> Result<usize, CodecError> {
    let json = serde_json::to_vec(msg).map_err(CodecError::Encode)?;
    Ok(gzip(&json).len().min(json.len()))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::default(),
    );
    enc.write_all(bytes)
        .expect("writing to a Vec-backed encoder cannot fail");
    enc.finish()
        .expect("finishing a Vec-backed encoder cannot fail")
}

/// Refuses a payload size over [`MAX_MESSAGE_BYTES`].
pub fn check_size(size: usize) -> Result<(), CodecError> {
    if size > MAX_MESSAGE_BYTES {
        Err(CodecError::TooLarge {
            size,
            limit: MAX_MESSAGE_BYTES,
        })
    } else {
        Ok(())
    }
}

/// Decodes a JSON or gzip-compressed JSON payload. Never panics on arbitrary bytes.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    serde_json::from_slice(&json_text(payload)?).map_err(CodecError::Malformed)
}

/// The JSON text of a payload: the payload itself, or what a compressed one expands to,
/// with the same limits as [`decode`]. For decoders that borrow from the text (the cloud
/// keeps each sample's JSON as it arrived).
pub fn json_text(payload: &[u8]) -> Result<Cow<'_, [u8]>, CodecError> {
    check_size(payload.len())?;
    if payload.starts_with(&GZIP_MAGIC) {
        gunzip(payload).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(payload))
    }
}

fn gunzip(payload: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(payload.len() * 4);
    let limit = MAX_DECOMPRESSED_BYTES as u64;
    flate2::read::GzDecoder::new(payload)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(CodecError::BadCompression)?;
    if out.len() as u64 > limit {
        return Err(CodecError::DecompressedTooLarge {
            limit: MAX_DECOMPRESSED_BYTES,
        });
    }
    Ok(out)
}
