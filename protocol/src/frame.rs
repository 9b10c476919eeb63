//! Frames: `length | (serializeType << 24 | headerLength) | header | body`, all big-endian,
//! where `length` counts everything after itself (reference §1.1).
//!
//! [`FrameDecoder`] decodes incrementally from a byte buffer: it returns `Ok(None)` until a
//! whole frame is buffered, takes one frame per call (a buffer may hold many), and never
//! allocates for a frame before checking its length against the limit.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::code::SerializeType;
use crate::command::RemotingCommand;
use crate::error::{ProtocolError, Result};

/// RocketMQ's default `com.rocketmq.remoting.frameMaxLength`: a whole frame, prefix included.
pub const FRAME_MAX_BYTES_DEFAULT: usize = 16 * 1024 * 1024;

/// The largest header length the 24-bit field can carry.
const HEADER_MAX_BYTES: usize = 0x00FF_FFFF;

/// Encodes `cmd` as one frame appended to `out`.
pub fn encode_frame(cmd: &RemotingCommand, out: &mut BytesMut) -> Result<()> {
    encode_frame_with_limit(cmd, out, FRAME_MAX_BYTES_DEFAULT)
}

/// Encodes `cmd`, refusing frames larger than `frame_max_bytes` (the peer would drop them).
pub fn encode_frame_with_limit(
    cmd: &RemotingCommand,
    out: &mut BytesMut,
    frame_max_bytes: usize,
) -> Result<()> {
    let start = out.len();
    // The two length words are written once the header's length is known.
    out.reserve(8 + 256 + cmd.body.len());
    out.put_u64(0);
    match cmd.serialize_type {
        SerializeType::Json => cmd.write_json_header(out),
        SerializeType::RocketMq => {
            let header = cmd.encode_binary_header().inspect_err(|_| out.truncate(start))?;
            out.put_slice(&header);
        }
    }
    let header_bytes = out.len() - start - 8;
    if header_bytes > HEADER_MAX_BYTES {
        out.truncate(start);
        return Err(ProtocolError::HeaderTooLarge { header_bytes });
    }
    let frame_bytes = 8 + header_bytes as u64 + cmd.body.len() as u64;
    if frame_bytes > frame_max_bytes as u64 {
        out.truncate(start);
        return Err(ProtocolError::FrameTooLarge { frame_bytes, max_bytes: frame_max_bytes });
    }
    let length = (frame_bytes - 4) as u32;
    let mark = (u32::from(cmd.serialize_type.code()) << 24) | header_bytes as u32;
    out[start..start + 4].copy_from_slice(&length.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&mark.to_be_bytes());
    out.put_slice(&cmd.body);
    Ok(())
}

/// Encodes `cmd` as a standalone frame.
pub fn encode_frame_to_vec(cmd: &RemotingCommand) -> Result<Vec<u8>> {
    let mut out = BytesMut::new();
    encode_frame(cmd, &mut out)?;
    Ok(out.to_vec())
}

/// Decodes a frame's payload: the bytes after the 4-byte length prefix.
pub fn decode_payload(payload: Bytes) -> Result<RemotingCommand> {
    if payload.len() < 4 {
        return Err(ProtocolError::FrameTooSmall { length: payload.len() as i64 });
    }
    let mark = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let serialize_type = SerializeType::from_code((mark >> 24) as u8)?;
    let header_bytes = (mark & 0x00FF_FFFF) as usize;
    let available_bytes = payload.len() - 4;
    if header_bytes > available_bytes {
        return Err(ProtocolError::BadHeaderLength { header_bytes, available_bytes });
    }
    let mut cmd =
        RemotingCommand::decode_header_bytes(serialize_type, &payload[4..4 + header_bytes])?;
    cmd.serialize_type = serialize_type;
    cmd.body = payload.slice(4 + header_bytes..);
    Ok(cmd)
}

/// Incremental frame decoder with a frame size limit.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    frame_max_bytes: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder { frame_max_bytes: FRAME_MAX_BYTES_DEFAULT }
    }
}

impl FrameDecoder {
    /// A decoder that refuses frames (prefix included) larger than `frame_max_bytes`.
    pub fn new(frame_max_bytes: usize) -> Self {
        FrameDecoder { frame_max_bytes }
    }

    pub fn frame_max_bytes(&self) -> usize {
        self.frame_max_bytes
    }

    /// Takes one whole frame off the front of `buf` and decodes it; `Ok(None)` if the frame is
    /// not complete yet. After an error the stream is unusable: the caller closes it.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RemotingCommand>> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if (length as i32) < 4 {
            return Err(ProtocolError::FrameTooSmall { length: i64::from(length as i32) });
        }
        let frame_bytes = u64::from(length) + 4;
        if frame_bytes > self.frame_max_bytes as u64 {
            return Err(ProtocolError::FrameTooLarge {
                frame_bytes,
                max_bytes: self.frame_max_bytes,
            });
        }
        if (buf.len() as u64) < frame_bytes {
            return Ok(None);
        }
        buf.advance(4);
        let payload = buf.split_to(length as usize).freeze();
        decode_payload(payload).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(opaque: i32, body: &'static [u8], st: SerializeType) -> RemotingCommand {
        let mut c = RemotingCommand::request_without_header(11).with_opaque(opaque).with_body(body);
        c.set_ext_field("topic", "T");
        c.serialize_type = st;
        c
    }

    #[test]
    fn decodes_many_frames_from_one_buffer_and_waits_for_partial_ones() {
        let frames = [
            cmd(1, b"one", SerializeType::Json),
            cmd(2, b"", SerializeType::RocketMq),
            cmd(3, b"three", SerializeType::Json),
        ];
        let mut all = BytesMut::new();
        for f in &frames {
            encode_frame(f, &mut all).unwrap();
        }
        // Feed one byte at a time: a frame appears exactly when its last byte arrives.
        let bytes = all.to_vec();
        let mut dec = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in bytes {
            buf.put_u8(b);
            while let Some(c) = dec.decode(&mut buf).unwrap() {
                got.push(c);
            }
        }
        assert_eq!(got, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_frames_over_the_limit_before_buffering_them() {
        let mut dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&(2000u32.to_be_bytes())[..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(ProtocolError::FrameTooLarge { frame_bytes: 2004, max_bytes: 1024 })
        );
        let mut huge = BytesMut::from(&(u32::MAX - 1).to_be_bytes()[..]);
        assert!(matches!(dec.decode(&mut huge), Err(ProtocolError::FrameTooSmall { .. })));
    }

    #[test]
    fn rejects_bad_header_lengths_and_types() {
        let mut dec = FrameDecoder::default();
        // length 8: mark says the header is 100 bytes but only 4 follow.
        let mut buf = BytesMut::new();
        buf.put_u32(8);
        buf.put_u32(100);
        buf.put_u32(0);
        assert_eq!(
            dec.decode(&mut buf),
            Err(ProtocolError::BadHeaderLength { header_bytes: 100, available_bytes: 4 })
        );
        let mut buf = BytesMut::new();
        buf.put_u32(4);
        buf.put_u32(7 << 24);
        assert_eq!(dec.decode(&mut buf), Err(ProtocolError::UnknownSerializeType(7)));
        let mut buf = BytesMut::new();
        buf.put_u32(3);
        buf.put_u32(0);
        assert_eq!(dec.decode(&mut buf), Err(ProtocolError::FrameTooSmall { length: 3 }));
    }

    #[test]
    fn encoder_refuses_what_the_peer_would_drop() {
        let big = RemotingCommand::request_without_header(10).with_body(vec![0u8; 2048]);
        let mut out = BytesMut::new();
        assert!(matches!(
            encode_frame_with_limit(&big, &mut out, 1024),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        assert!(out.is_empty());
    }
}
