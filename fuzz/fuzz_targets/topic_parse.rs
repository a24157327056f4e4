//! `Topics::parse`, and `Topics::new` for the prefix.
//!
//! Input: text; up to the first newline is the prefix (empty: the default prefix), the
//! rest the topic. Properties: nothing panics; `parse` is the inverse of `topic_for` in
//! both directions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shiki_proto::Topics;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (prefix, topic) = text.split_once('\n').unwrap_or(("", text));
    let topics = if prefix.is_empty() {
        Topics::default()
    } else {
        match Topics::new(prefix) {
            Ok(t) => t,
            Err(_) => return,
        }
    };
    // A valid prefix is a valid filter base: the subscriptions must build.
    let _ = topics.cloud_subscriptions();
    let Ok((device, channel)) = topics.parse(topic) else {
        return;
    };
    let built = topics.topic_for(&device, &channel);
    assert_eq!(built, topic, "topic_for(parse(t)) != t");
    let (d2, c2) = topics.parse(&built).expect("a built topic parses");
    assert_eq!((d2, c2), (device.clone(), channel.clone()));
    let _ = topics.edge_subscriptions(&device);
    let _ = (
        channel.kind().name(),
        channel.direction(),
        channel.retained(),
    );
});
