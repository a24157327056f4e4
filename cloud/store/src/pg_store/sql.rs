//! JSON in and out of `jsonb` columns as text: the store's records are serde JSON already,
//! so they go to the server as they are (the server parses them once) and come back as
//! text to decode, never through `serde_json::Value`.

use std::error::Error;

use bytes::BufMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// The binary `jsonb` format's version byte, before the JSON text.
const JSONB_VERSION: u8 = 1;

/// JSON text as a `json`/`jsonb` parameter.
#[derive(Debug, Clone, Copy)]
pub(super) struct JsonText<'a>(pub &'a [u8]);

impl ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.put_u8(JSONB_VERSION);
        }
        out.put_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}

/// A `json`/`jsonb` result as its text.
#[derive(Debug, Clone)]
pub(super) struct JsonBuf(pub Vec<u8>);

impl<'a> FromSql<'a> for JsonBuf {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((&JSONB_VERSION, text)) => text,
                Some((v, _)) => return Err(format!("unknown jsonb format version {v}").into()),
                None => return Err("empty jsonb value".into()),
            }
        } else {
            raw
        };
        Ok(JsonBuf(text.to_vec()))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
}
