//! Reading captures: pcap and pcapng files, Ethernet and Linux cooked (SLL) link types.
//! Every frame comes out as an Ethernet frame (SLL headers are rewritten), with its
//! timestamp. Broken files give a clear error, never a panic.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

/// One frame of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    /// When it was captured (since the Unix epoch).
    pub time: Duration,
    /// The Ethernet frame.
    pub data: Vec<u8>,
    /// True when the capture holds less than the frame's original length.
    pub truncated: bool,
}

/// Errors reading a capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureReadError {
    /// The file cannot be opened or read.
    #[error("{path}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Neither a pcap nor a pcapng file, or its header is damaged.
    #[error("{path}: not a pcap or pcapng capture ({reason})")]
    Format {
        /// The file.
        path: String,
        /// What the parser said.
        reason: String,
    },
    /// The file is damaged after the header.
    #[error("{path}: damaged at frame {frame}: {reason}")]
    Damaged {
        /// The file.
        path: String,
        /// Frames read before the damage.
        frame: usize,
        /// What the parser said.
        reason: String,
    },
    /// A link type we cannot turn into Ethernet.
    #[error(
        "{path}: link type {link:?} is not supported (Ethernet and Linux cooked captures are)"
    )]
    LinkType {
        /// The file.
        path: String,
        /// The link type.
        link: DataLink,
    },
}

/// Reads every frame of the capture at `path`.
pub fn read_capture(path: &Path) -> Result<Vec<CapturedFrame>, CaptureReadError> {
    let name = path.display().to_string();
    let mut file = File::open(path).map_err(|source| CaptureReadError::Io {
        path: name.clone(),
        source,
    })?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(|source| {
        if source.kind() == std::io::ErrorKind::UnexpectedEof {
            CaptureReadError::Format {
                path: name.clone(),
                reason: "shorter than a capture header".into(),
            }
        } else {
            // A directory, for instance: say so rather than "too short".
            CaptureReadError::Io {
                path: name.clone(),
                source,
            }
        }
    })?;
    let file = File::open(path).map_err(|source| CaptureReadError::Io {
        path: name.clone(),
        source,
    })?;
    let reader = BufReader::new(file);
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        read_pcapng(reader, &name)
    } else {
        read_pcap(reader, &name)
    }
}

/// Reads every frame of a capture held in memory (pcap or pcapng, told apart by the magic
/// number as [`read_capture`] does); `name` labels the errors. Broken input is an error,
/// never a panic.
pub fn read_capture_bytes(
    bytes: &[u8],
    name: &str,
) -> Result<Vec<CapturedFrame>, CaptureReadError> {
    match bytes.get(..4) {
        None => Err(CaptureReadError::Format {
            path: name.to_string(),
            reason: "shorter than a capture header".into(),
        }),
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => read_pcapng(bytes, name),
        Some(_) => read_pcap(bytes, name),
    }
}

fn read_pcap<R: Read>(reader: R, name: &str) -> Result<Vec<CapturedFrame>, CaptureReadError> {
    let mut pcap = PcapReader::new(reader).map_err(|e| CaptureReadError::Format {
        path: name.to_string(),
        reason: e.to_string(),
    })?;
    let link = pcap.header().datalink;
    let mut frames = Vec::new();
    while let Some(packet) = pcap.next_packet() {
        let packet = packet.map_err(|e| CaptureReadError::Damaged {
            path: name.to_string(),
            frame: frames.len(),
            reason: e.to_string(),
        })?;
        let truncated = (packet.data.len() as u64) < u64::from(packet.orig_len);
        let data = to_ethernet(link, &packet.data).ok_or_else(|| CaptureReadError::LinkType {
            path: name.to_string(),
            link,
        })?;
        frames.push(CapturedFrame {
            time: packet.timestamp,
            data,
            truncated,
        });
    }
    Ok(frames)
}

fn read_pcapng<R: Read>(reader: R, name: &str) -> Result<Vec<CapturedFrame>, CaptureReadError> {
    let mut pcapng = PcapNgReader::new(reader).map_err(|e| CaptureReadError::Format {
        path: name.to_string(),
        reason: e.to_string(),
    })?;
    let mut frames = Vec::new();
    // Link types of the interfaces described so far in this section.
    let mut links: Vec<DataLink> = Vec::new();
    loop {
        let block = match pcapng.next_block() {
            None => break,
            Some(Ok(block)) => block,
            Some(Err(e)) => {
                return Err(CaptureReadError::Damaged {
                    path: name.to_string(),
                    frame: frames.len(),
                    reason: e.to_string(),
                })
            }
        };
        let (interface, time, data, orig_len) = match &block {
            Block::SectionHeader(_) => {
                links.clear();
                continue;
            }
            Block::InterfaceDescription(idb) => {
                links.push(idb.linktype);
                continue;
            }
            Block::EnhancedPacket(p) => (p.interface_id, p.timestamp, &p.data, p.original_len),
            // The obsolete Packet block counts time in the default unit, microseconds.
            Block::Packet(p) => (
                u32::from(p.interface_id),
                Duration::from_micros(p.timestamp),
                &p.data,
                p.original_len,
            ),
            _ => continue,
        };
        let link =
            links
                .get(interface as usize)
                .copied()
                .ok_or_else(|| CaptureReadError::Damaged {
                    path: name.to_string(),
                    frame: frames.len(),
                    reason: format!("packet names interface {interface}, which is not described"),
                })?;
        let truncated = (data.len() as u64) < u64::from(orig_len);
        let data = to_ethernet(link, data).ok_or_else(|| CaptureReadError::LinkType {
            path: name.to_string(),
            link,
        })?;
        frames.push(CapturedFrame {
            time,
            data,
            truncated,
        });
    }
    Ok(frames)
}

/// The frame as Ethernet: as is for Ethernet, with a made-up Ethernet header for Linux
/// cooked captures (SLL: 16-byte header, protocol at bytes 14..16; SLL2: 20 bytes,
/// protocol at 0..2). `None` for other link types; short SLL frames become empty frames
/// (which the stack counts as malformed).
fn to_ethernet(link: DataLink, data: &[u8]) -> Option<Vec<u8>> {
    let (protocol, payload) = match link {
        DataLink::ETHERNET => return Some(data.to_vec()),
        DataLink::LINUX_SLL => match (data.get(14..16), data.get(16..)) {
            (Some(p), Some(rest)) => ([p[0], p[1]], rest),
            _ => return Some(Vec::new()),
        },
        DataLink::LINUX_SLL2 => match (data.get(0..2), data.get(20..)) {
            (Some(p), Some(rest)) => ([p[0], p[1]], rest),
            _ => return Some(Vec::new()),
        },
        _ => return None,
    };
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xfe]); // placeholder destination
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xff]); // placeholder source
    frame.extend_from_slice(&protocol);
    frame.extend_from_slice(payload);
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("tapir-pcap-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn corrupt_and_short_files_are_clear_errors() {
        let short = temp("short", b"\xd4\xc3");
        assert!(matches!(
            read_capture(&short),
            Err(CaptureReadError::Format { .. })
        ));
        let junk = temp("junk", &[0x55; 64]);
        let err = read_capture(&junk).unwrap_err();
        assert!(err.to_string().contains("not a pcap"), "{err}");
        let missing = std::env::temp_dir().join("tapir-no-such-file.pcap");
        assert!(matches!(
            read_capture(&missing),
            Err(CaptureReadError::Io { .. })
        ));
        std::fs::remove_file(short).ok();
        std::fs::remove_file(junk).ok();
    }

    #[test]
    fn captures_in_memory_read_like_files() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
        for file in ["golden/http1.pcap", "real/curl-ipv6-tapir.pcapng"] {
            let path = dir.join(file);
            let from_file = read_capture(&path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let from_bytes = read_capture_bytes(&bytes, file).unwrap();
            assert!(!from_bytes.is_empty(), "{file}");
            assert_eq!(from_bytes, from_file, "{file}");
        }
        assert!(matches!(
            read_capture_bytes(b"\xd4\xc3", "short"),
            Err(CaptureReadError::Format { .. })
        ));
        let err = read_capture_bytes(&[0x55; 64], "junk").unwrap_err();
        assert!(err.to_string().contains("not a pcap"), "{err}");
    }

    #[test]
    fn sll_becomes_ethernet() {
        let mut sll = vec![0u8; 16];
        sll[14] = 0x08;
        sll.extend_from_slice(&[0x45, 0]);
        let eth = to_ethernet(DataLink::LINUX_SLL, &sll).unwrap();
        assert_eq!(&eth[12..14], &[0x08, 0x00]);
        assert_eq!(&eth[14..], &[0x45, 0]);
        assert_eq!(to_ethernet(DataLink::LINUX_SLL, &[1, 2]), Some(Vec::new()));
        assert_eq!(to_ethernet(DataLink::RAW, &[1]), None);
    }
}
