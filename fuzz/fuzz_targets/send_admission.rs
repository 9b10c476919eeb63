//! The broker's admission step (`rocketraft_broker::admission`) on arbitrary sends: nothing may
//! panic, and whatever it accepts must be records dispatch indexes (`admit::check_record`), no
//! larger than the limits say.
//!
//! Input layout (short inputs are padded with zeros): code selector (1 byte), topic length
//! (1) and topic, sysFlag (4), queue id (4), properties length (2) and properties (lossy
//! UTF-8), then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocketraft_broker::admission::{check_header, encode_records, SendLimits, Stamp};
use rocketraft_protocol::headers::SendMessageRequestHeader;
use rocketraft_protocol::message::RecordView;
use rocketraft_protocol::request_code as rc;
use rocketraft_store::admit::check_record;

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn i32(&mut self) -> i32 {
        let mut b = [0u8; 4];
        let got = self.take(4);
        b[..got.len()].copy_from_slice(got);
        i32::from_be_bytes(b)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let code = [rc::SEND_MESSAGE, rc::SEND_MESSAGE_V2, rc::SEND_BATCH_MESSAGE][input.u8() as usize % 3];
    let topic_len = input.u8() as usize;
    let topic = String::from_utf8_lossy(input.take(topic_len)).into_owned();
    let sys_flag = input.i32();
    let queue_id = input.i32();
    let props_len = (input.u8() as usize) << 8 | input.u8() as usize;
    let properties = String::from_utf8_lossy(input.take(props_len)).into_owned();
    let body = input.0;
    let h = SendMessageRequestHeader {
        producer_group: "PG".into(),
        topic,
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag,
        born_timestamp: 0,
        flag: 0,
        properties: Some(properties),
        reconsume_times: None,
        unit_mode: None,
        batch: None,
        max_reconsume_times: None,
        broker_name: None,
    };
    let host = "127.0.0.1:10911".parse().unwrap();
    let stamp = Stamp { born_host: host, store_host: host, store_timestamp_ms: 0 };
    let limits = SendLimits { body_max_bytes: 1 << 16, entry_payload_max_bytes: 1 << 17 };
    let accepted =
        check_header(&h, host).and_then(|()| encode_records(code, &h, body, queue_id, stamp, limits));
    if let Ok(records) = accepted {
        assert!(!records.is_empty());
        let total: usize = records.iter().map(Vec::len).sum();
        assert!(total <= limits.records_max_bytes(), "{total} bytes accepted");
        for r in &records {
            let view = RecordView::decode(r).expect("an accepted record decodes");
            assert_eq!(view.total_size, r.len());
            check_record(&view).expect("dispatch indexes what admission accepts");
        }
    }
});
