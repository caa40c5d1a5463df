//! The protobuf codec of every Cairn service: prost's, except that a message that does
//! not decode is the sender's fault — `INVALID_ARGUMENT`, not `INTERNAL` — and the
//! status says which message type it was meant to be.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Messages this process received that did not decode (a member's metrics report it).
pub static DECODE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Encodes `T`, decodes `U`.
#[derive(Debug, Clone)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder(ProstDecoder::default())
    }
}

/// prost's decoder, with decode errors answered as invalid arguments.
#[derive(Debug, Clone)]
pub struct CheckedDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|s| {
            if s.code() == Code::Internal {
                DECODE_FAILURES.fetch_add(1, Ordering::Relaxed);
                let name = std::any::type_name::<U>().rsplit("::").next().unwrap_or("");
                Status::invalid_argument(format!("not a valid {name} message: {}", s.message()))
            } else {
                s
            }
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
