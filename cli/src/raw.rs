//! A protobuf message kept as its encoded bytes, for calls whose types are known only from
//! descriptors at run time.

use bytes::{Buf, BufMut};
use prost::encoding::{decode_varint, encode_key, encode_varint, DecodeContext, WireType};
use prost::DecodeError;

/// Encoded protobuf bytes passed through as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Raw(pub Vec<u8>);

/// prost offers no other way to name a decoding error of one's own.
#[allow(deprecated)]
fn decode_error(what: &'static str) -> DecodeError {
    DecodeError::new(what)
}

fn copy(buf: &mut impl Buf, out: &mut Vec<u8>, len: usize) -> Result<(), DecodeError> {
    if buf.remaining() < len {
        return Err(decode_error("buffer underflow"));
    }
    let start = out.len();
    out.resize(start + len, 0);
    buf.copy_to_slice(&mut out[start..]);
    Ok(())
}

impl prost::Message for Raw {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        _ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        encode_key(tag, wire_type, &mut self.0);
        match wire_type {
            WireType::Varint => {
                let v = decode_varint(buf)?;
                encode_varint(v, &mut self.0);
                Ok(())
            }
            WireType::SixtyFourBit => copy(buf, &mut self.0, 8),
            WireType::ThirtyTwoBit => copy(buf, &mut self.0, 4),
            WireType::LengthDelimited => {
                let len = decode_varint(buf)?;
                encode_varint(len, &mut self.0);
                let len = usize::try_from(len).map_err(|_| decode_error("length too large"))?;
                copy(buf, &mut self.0, len)
            }
            WireType::StartGroup | WireType::EndGroup => {
                Err(decode_error("protobuf groups are not supported"))
            }
        }
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Sample {
        #[prost(int64, tag = "1")]
        a: i64,
        #[prost(string, tag = "2")]
        b: String,
        #[prost(fixed32, tag = "3")]
        c: u32,
        #[prost(double, tag = "4")]
        d: f64,
    }

    #[test]
    fn round_trips_every_wire_type() {
        let s = Sample {
            a: -5,
            b: "héllo".into(),
            c: 7,
            d: 1.5,
        };
        let bytes = s.encode_to_vec();
        let raw = Raw::decode(bytes.as_slice()).unwrap();
        assert_eq!(raw.0, bytes);
        assert_eq!(Sample::decode(raw.encode_to_vec().as_slice()).unwrap(), s);
        assert!(Raw::decode(&[0x12, 0x05, b'a'][..]).is_err());
    }
}
