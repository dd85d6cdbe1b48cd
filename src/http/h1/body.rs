//! Body framing shared by the server and client engines: a length, chunked coding, or (for
//! responses) everything until the connection closes.

use bytes::BytesMut;
use http::header::HeaderMap;

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

    /// The trailer fields of a complete chunked body, without the fields a trailer section
    /// never carries ([`crate::http::permitted_trailers`]); `None` when none are left (or the body is
    /// not chunked, not complete, or its decoder does not keep trailers).
    pub(super) fn take_trailers(&mut self) -> Option<HeaderMap> {
        let BodyDecoder::Chunked(decoder) = self else {
            return None;
        };
        crate::http::permitted_trailers(decoder.take_trailers()?)
    }
}
