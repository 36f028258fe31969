//! Payload formats. The default is MessagePack with field names (`rmp-serde`): self-describing,
//! tolerant of fields added on the sending side, and readable from other languages. This module
//! only turns values into payload bytes and back; frames never pass through it.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Serialises `value` as a MessagePack map (struct fields by name).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, Error> {
    rmp_serde::to_vec_named(value)
        .map(Bytes::from)
        .map_err(|e| Error::Encode(Box::new(e)))
}

/// Deserialises one payload as `T`.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Error> {
    rmp_serde::from_slice(payload).map_err(|e| Error::Decode {
        type_name: std::any::type_name::<T>(),
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct V1 {
        id: u32,
        text: String,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct V2 {
        id: u32,
        text: String,
        extra: Vec<u8>,
    }

    #[test]
    fn round_trip_and_added_fields_are_tolerated() {
        let v2 = V2 {
            id: 7,
            text: "hi".into(),
            extra: vec![1, 2],
        };
        let bytes = encode(&v2).expect("encode");
        assert_eq!(decode::<V2>(&bytes).expect("decode"), v2);
        // A reader that does not know the added field still reads the message.
        assert_eq!(
            decode::<V1>(&bytes).expect("decode"),
            V1 {
                id: 7,
                text: "hi".into()
            }
        );
    }

    #[test]
    fn wrong_type_is_a_decode_error() {
        let bytes = encode("not a number").expect("encode");
        assert!(matches!(decode::<u64>(&bytes), Err(Error::Decode { .. })));
    }
}
