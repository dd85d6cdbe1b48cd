//! Body framing shared by the server and client engines: a length, chunked coding, or (for
//! responses) everything until the connection closes.

use bytes::BytesMut;

use super::chunked::{ChunkedDecoder, ChunkedError};

/// How the body being read is framed, with the state to decode it.
#[derive(Debug)]
pub(super) enum BodyDecoder {
    /// This many bytes remain.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(ChunkedDecoder),
    /// Until the peer closes (responses only).
    Close,
}

impl BodyDecoder {
    /// Decodes from `input` into `out`, producing at most `room` bytes. Returns the bytes of
    /// `input` consumed and whether the body is complete (never, for [`BodyDecoder::Close`]:
    /// that body ends at EOF).
    pub(super) fn decode(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        room: usize,
    ) -> Result<(usize, bool), ChunkedError> {
        match self {
            BodyDecoder::Length(remaining) => {
                let take = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len())
                    .min(room);
                out.extend_from_slice(input.get(..take).unwrap_or(&[]));
                *remaining -= take as u64;
                Ok((take, *remaining == 0))
            }
            BodyDecoder::Chunked(d) => d.decode(input, out, room).map(|n| (n, d.is_done())),
            BodyDecoder::Close => {
                let take = input.len().min(room);
                out.extend_from_slice(input.get(..take).unwrap_or(&[]));
                Ok((take, false))
            }
        }
    }
}
