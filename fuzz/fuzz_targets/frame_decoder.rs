//! Feeds arbitrary bytes to the frame decoder in arbitrary chunks, then decodes every header
//! type and body type from what comes out. Nothing may panic; a decoded command must
//! re-encode to a frame that decodes to the same command.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rocketraft_protocol::body::*;
use rocketraft_protocol::frame::{encode_frame_to_vec, FrameDecoder};
use rocketraft_protocol::headers::*;
use rocketraft_protocol::RemotingCommand;

fn exercise(cmd: &RemotingCommand) {
    let _ = cmd.decode_header::<SendMessageRequestHeaderV2>();
    let _ = cmd.decode_header::<SendMessageRequestHeader>();
    let _ = cmd.decode_header::<PullMessageRequestHeader>();
    let _ = cmd.decode_header::<RegisterBrokerRequestHeader>();
    let _ = cmd.decode_header::<EndTransactionRequestHeader>();
    let _ = TopicRouteData::from_json(&cmd.body);
    let _ = HeartbeatData::from_json(&cmd.body);
    let _ = RegisterBrokerBody::from_json(&cmd.body);
    let _ = LockBatchRequestBody::from_json(&cmd.body);
    if let Ok(frame) = encode_frame_to_vec(cmd) {
        let mut buf = BytesMut::from(&frame[..]);
        let again = FrameDecoder::new(1 << 20).decode(&mut buf).expect("re-encoded frame decodes");
        assert_eq!(again.as_ref(), Some(cmd));
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks a chunk size, so frames straddle buffer refills.
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => exercise(&cmd),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
