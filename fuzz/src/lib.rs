//! Helpers the fuzz targets share. Not part of the product.

use std::io::Write;

use shiki_proto::{Catalog, PointDictionary, PointInfo};

/// `bytes` gzip-compressed, as `shiki_proto::encode_compressed` would send them.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("writing to a Vec cannot fail");
    enc.finish()
        .expect("finishing a Vec-backed encoder cannot fail")
}

/// A fuzz input split into its selector byte and the payload, gzip-compressed first when
/// the selector's high bit is set (a topic's payload may arrive either way). `None`: empty.
pub fn selector_and_payload(data: &[u8]) -> Option<(u8, std::borrow::Cow<'_, [u8]>)> {
    let (&selector, payload) = data.split_first()?;
    let payload = if selector & 0x80 != 0 {
        std::borrow::Cow::Owned(gzip(payload))
    } else {
        std::borrow::Cow::Borrowed(payload)
    };
    Some((selector, payload))
}

/// The golden catalog example (`proto/examples/catalog.json`).
pub fn example_catalog() -> Catalog {
    serde_json::from_str(include_str!("../../proto/examples/catalog.json"))
        .expect("the golden catalog decodes")
}

/// The golden catalog's points.
pub fn example_points() -> Vec<PointInfo> {
    example_catalog().points
}

/// The point dictionary a device with the golden catalog uses.
pub fn example_dictionary() -> PointDictionary {
    PointDictionary::from_catalog(&example_catalog())
}

/// The dictionary of the compact golden examples (`telemetry-compact.json` carries it,
/// `telemetry-compact-by-id.json` names it by id only).
pub fn compact_example_dictionary() -> PointDictionary {
    PointDictionary::new(
        [
            "supply_c",
            "return_c",
            "outdoor_c",
            "running",
            "alarm_code",
            "gas_m3h",
            "mode",
        ]
        .map(String::from)
        .to_vec(),
    )
}

/// The dictionaries a cloud may know by id: the golden catalog's and the compact examples'.
pub fn known_dictionary(id: &str) -> Option<PointDictionary> {
    [example_dictionary(), compact_example_dictionary()]
        .into_iter()
        .find(|d| d.id() == id)
}
