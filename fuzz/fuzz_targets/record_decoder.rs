//! Arbitrary bytes as stored message records, batch bodies, properties and message ids.
//! Nothing may panic; a record that decodes must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocketraft_protocol::message::*;

fuzz_target!(|data: &[u8]| {
    if let Ok(view) = RecordView::decode(data) {
        let _ = view.verify_body_crc();
        let _ = view.property(property::TAGS);
        let owned = view.to_owned_record();
        if owned.normalized_sys_flag() == owned.sys_flag
            && (owned.topic.len() > TOPIC_V1_MAX_BYTES) == (view.magic == MAGIC_V2)
        {
            assert_eq!(owned.encode().expect("re-encodes"), &data[..view.total_size]);
        }
    }
    let _ = decode_records(data);
    let _ = decode_batch(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_properties(text);
        let _ = decode_offset_msg_id(text);
        let _ = java_string_hash(text);
    }
});
