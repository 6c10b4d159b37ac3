//! Serdes turn typed keys and values into bytes and back.
//!
//! Every edge that touches Kafka names a serde for its key and its value, and
//! the serde's type parameter must match the edge's type, so a mismatch is a
//! compile error. Built in: [`Json`], [`Bincode`], [`Protobuf`], [`Utf8`] and
//! [`RawBytes`]; implement [`Serde`] for your own format.
//!
//! A record with no key or no value reaches the deserializer as empty bytes.
//!
//! ```
//! use engine::serdes::{Json, Serde, Utf8};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Order { id: u32, drink: String }
//!
//! let json = Json::<Order>::new();
//! let bytes = json.serialize(&Order { id: 7, drink: "Latte".into() }).unwrap();
//! assert_eq!(bytes, br#"{"id":7,"drink":"Latte"}"#);
//! assert_eq!(json.deserialize(&bytes).unwrap().drink, "Latte");
//! assert!(Utf8.deserialize(&[0xff]).is_err());
//! ```

use std::marker::PhantomData;

/// A serde could not encode or decode a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format}: {message}")]
pub struct SerdeError {
    /// The serde's format name, e.g. `json`.
    pub format: &'static str,
    /// What went wrong.
    pub message: String,
}

impl SerdeError {
    /// A new error for `format`.
    pub fn new(format: &'static str, message: impl ToString) -> Self {
        Self {
            format,
            message: message.to_string(),
        }
    }
}

/// Encodes values of type `T` into bytes and decodes them back.
pub trait Serde<T>: Send + Sync + 'static {
    /// Appends the encoding of `value` to `buf`.
    fn serialize_into(&self, value: &T, buf: &mut Vec<u8>) -> Result<(), SerdeError>;

    /// Decodes a value from `bytes`.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError>;

    /// The format's name, shown in topology descriptions.
    fn format(&self) -> &'static str;

    /// Encodes `value` for a record, where `None` means no value at all (a
    /// tombstone). Only [`Nullable`] ever returns `None`.
    fn serialize_nullable(&self, value: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        let mut buf = Vec::with_capacity(INITIAL_BUFFER_BYTES);
        self.serialize_into(value, &mut buf)?;
        Ok(Some(buf))
    }

    /// Decodes a record's bytes, `None` when it has none (a tombstone).
    /// Serdes other than [`Nullable`] read a missing value as empty bytes.
    fn deserialize_nullable(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError> {
        self.deserialize(bytes.unwrap_or_default())
    }

    /// Encodes `value` into a new buffer.
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerdeError> {
        let mut buf = Vec::with_capacity(INITIAL_BUFFER_BYTES);
        self.serialize_into(value, &mut buf)?;
        Ok(buf)
    }
}

/// The first capacity of a record's encoding buffer. Growing from empty
/// took five reallocations for a 200-byte JSON value, 8 % of the stream
/// thread's time in the stateless benchmark; most keys and values fit in
/// this, and the buffer lives only until the producer has copied it.
const INITIAL_BUFFER_BYTES: usize = 256;

/// JSON through `serde_json`.
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// A JSON serde for `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> Serde<T> for Json<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn serialize_into(&self, value: &T, buf: &mut Vec<u8>) -> Result<(), SerdeError> {
        serde_json::to_writer(buf, value).map_err(|error| SerdeError::new("json", error))
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        serde_json::from_slice(bytes).map_err(|error| SerdeError::new("json", error))
    }

    fn format(&self) -> &'static str {
        "json"
    }
}

/// bincode 2 (standard configuration) through its `serde` integration.
pub struct Bincode<T>(PhantomData<fn() -> T>);

impl<T> Bincode<T> {
    /// A bincode serde for `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Bincode<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Bincode<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> Serde<T> for Bincode<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn serialize_into(&self, value: &T, buf: &mut Vec<u8>) -> Result<(), SerdeError> {
        bincode::serde::encode_into_std_write(value, buf, bincode::config::standard())
            .map(|_| ())
            .map_err(|error| SerdeError::new("bincode", error))
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        let (value, read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|error| SerdeError::new("bincode", error))?;
        if read != bytes.len() {
            return Err(SerdeError::new(
                "bincode",
                format!("{} trailing bytes after the value", bytes.len() - read),
            ));
        }
        Ok(value)
    }

    fn format(&self) -> &'static str {
        "bincode"
    }
}

/// Protocol Buffers through `prost`.
pub struct Protobuf<T>(PhantomData<fn() -> T>);

impl<T> Protobuf<T> {
    /// A protobuf serde for the message type `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Protobuf<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Protobuf<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> Serde<T> for Protobuf<T>
where
    T: prost::Message + Default + 'static,
{
    fn serialize_into(&self, value: &T, buf: &mut Vec<u8>) -> Result<(), SerdeError> {
        value
            .encode(buf)
            .map_err(|error| SerdeError::new("protobuf", error))
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        T::decode(bytes).map_err(|error| SerdeError::new("protobuf", error))
    }

    fn format(&self) -> &'static str {
        "protobuf"
    }
}

/// UTF-8 text as `String`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8;

impl Serde<String> for Utf8 {
    fn serialize_into(&self, value: &String, buf: &mut Vec<u8>) -> Result<(), SerdeError> {
        buf.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<String, SerdeError> {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|error| SerdeError::new("utf8", error))
    }

    fn format(&self) -> &'static str {
        "utf8"
    }
}

/// A `u64` as 8 big-endian bytes, the layout of Kafka's own `LongSerde`
/// (so counts are readable by Java consumers).
#[derive(Debug, Clone, Copy, Default)]
pub struct U64;

impl Serde<u64> for U64 {
    fn serialize_into(&self, value: &u64, buf: &mut Vec<u8>) -> Result<(), SerdeError> {
        buf.extend_from_slice(&value.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<u64, SerdeError> {
        let bytes: [u8; 8] = bytes.try_into().map_err(|_| {
            SerdeError::new("u64", format!("expected 8 bytes, got {}", bytes.len()))
        })?;
        Ok(u64::from_be_bytes(bytes))
    }

    fn format(&self) -> &'static str {
        "u64"
    }
}

/// Optional values, where `None` is a record without a value — a
/// tombstone that deletes its key from a table or a compacted topic.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nullable<S>(pub S);

impl<T, S: Serde<T>> Serde<Option<T>> for Nullable<S> {
    fn serialize_into(&self, value: &Option<T>, buf: &mut Vec<u8>) -> Result<(), SerdeError> {
        match value {
            Some(value) => self.0.serialize_into(value, buf),
            None => Ok(()),
        }
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Option<T>, SerdeError> {
        self.0.deserialize(bytes).map(Some)
    }

    fn serialize_nullable(&self, value: &Option<T>) -> Result<Option<Vec<u8>>, SerdeError> {
        value
            .as_ref()
            .map(|value| self.0.serialize(value))
            .transpose()
    }

    fn deserialize_nullable(&self, bytes: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        bytes.map(|bytes| self.0.deserialize(bytes)).transpose()
    }

    fn format(&self) -> &'static str {
        self.0.format()
    }
}

/// Bytes as they are, as `Vec<u8>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl Serde<Vec<u8>> for RawBytes {
    fn serialize_into(&self, value: &Vec<u8>, buf: &mut Vec<u8>) -> Result<(), SerdeError> {
        buf.extend_from_slice(value);
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(bytes.to_vec())
    }

    fn format(&self) -> &'static str {
        "bytes"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    struct Order {
        id: u64,
        drink: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Ping {
        #[prost(string, tag = "1")]
        text: String,
    }

    #[test]
    fn every_serde_round_trips() {
        let order = Order {
            id: 42,
            drink: "Latte".into(),
        };
        let json = Json::<Order>::new();
        assert_eq!(
            json.deserialize(&json.serialize(&order).unwrap()).unwrap(),
            order
        );
        let bin = Bincode::<Order>::new();
        assert_eq!(
            bin.deserialize(&bin.serialize(&order).unwrap()).unwrap(),
            order
        );
        let pb = Protobuf::<Ping>::new();
        let ping = Ping { text: "hi".into() };
        assert_eq!(pb.deserialize(&pb.serialize(&ping).unwrap()).unwrap(), ping);
        assert_eq!(
            Utf8.deserialize(&Utf8.serialize(&"héllo".to_owned()).unwrap())
                .unwrap(),
            "héllo"
        );
        assert_eq!(RawBytes.deserialize(&[1, 2, 3]).unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn bad_bytes_are_errors_naming_the_format() {
        let error = Json::<Order>::new().deserialize(b"{not json").unwrap_err();
        assert_eq!(error.format, "json");
        let error = Bincode::<Order>::new()
            .deserialize(&[0xff, 0xff])
            .unwrap_err();
        assert_eq!(error.format, "bincode");
        let error = Protobuf::<Ping>::new()
            .deserialize(&[0x0a, 0x05, b'a'])
            .unwrap_err();
        assert_eq!(error.format, "protobuf");
        assert_eq!(Utf8.deserialize(&[0xc3]).unwrap_err().format, "utf8");
    }

    #[test]
    fn bincode_rejects_trailing_bytes() {
        let bin = Bincode::<u32>::new();
        let mut bytes = bin.serialize(&7).unwrap();
        bytes.push(0);
        assert!(bin.deserialize(&bytes).is_err());
    }
}
