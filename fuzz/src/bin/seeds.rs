//! Writes the seed corpora of every fuzz target from the captures in `captures/`:
//! `seeds CAPTURES_DIR CORPUS_DIR` (scripts/fuzz.sh runs it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tapir::device::pcap_reader::{read_capture, CapturedFrame};
use tapir::replay::live::exchanges::Protocol;
use tapir::replay::live::flows;
use tapir::replay::ExactConfig;
use tapir::runtime::sim::EPOCH_MICROS;
use tapir_fuzz::conn::H2_PREFACE;

struct Corpus {
    dir: PathBuf,
    count: usize,
}

impl Corpus {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed file");
        self.count += 1;
    }
}

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sub in ["golden", "real"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == "pcap" || ext == "pcapng" {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The frames sent to the server (not from its MAC), with the delay before each: the first
/// one's from the simulation epoch for the golden captures, zero for the others.
fn client_frames(frames: &[CapturedFrame], golden: bool) -> Vec<(Duration, Vec<u8>)> {
    let server = ExactConfig::default().server_mac;
    let mut previous = if golden {
        Duration::from_micros(EPOCH_MICROS as u64)
    } else {
        frames.first().map(|f| f.time).unwrap_or_default()
    };
    let mut out = Vec::new();
    for frame in frames {
        let from_server = frame.data.get(6..12) == Some(&server.0[..]);
        // In the real captures the server is whoever answers from port 80/8080.
        let to_server = if golden {
            !from_server
        } else {
            flows::parse_segment(&frame.data)
                .map(|s| matches!(s.dst.port(), 80 | 8080))
                .unwrap_or(false)
        };
        if to_server {
            out.push((frame.time.saturating_sub(previous), frame.data.clone()));
            previous = frame.time;
        }
    }
    out
}

fn chunked_body(client: &[u8]) -> Option<&[u8]> {
    let text = String::from_utf8_lossy(client).to_ascii_lowercase();
    if !text.contains("transfer-encoding: chunked") {
        return None;
    }
    let end = client.windows(4).position(|w| w == b"\r\n\r\n")?;
    client.get(end + 4..)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(captures_dir), Some(corpus_dir)) = (args.next(), args.next()) else {
        eprintln!("usage: seeds CAPTURES_DIR CORPUS_DIR");
        std::process::exit(2);
    };
    let mut corpus = Corpus {
        dir: PathBuf::from(corpus_dir),
        count: 0,
    };
    for path in captures(Path::new(&captures_dir)) {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("capture")
            .to_string();
        let golden = path.parent().is_some_and(|p| p.ends_with("golden"));
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if bytes.len() <= 64 * 1024 {
            corpus.put("pcap", &name, &bytes);
        }
        let frames = match read_capture(&path) {
            Ok(frames) => frames,
            Err(e) => {
                eprintln!("skipping {}: {e}", path.display());
                continue;
            }
        };
        let to_server = client_frames(&frames, golden);
        if !to_server.is_empty() {
            let flags = if golden { 0 } else { 1 };
            corpus.put(
                "frames",
                &name,
                &tapir_fuzz::frames::encode(flags, &to_server),
            );
        }
        let extracted = flows::extract(&frames);
        for (i, flow) in extracted.flows.iter().enumerate().take(8) {
            let client = &flow.to_server.data;
            if client.is_empty() {
                continue;
            }
            let client = &client[..client.len().min(32 * 1024)];
            match Protocol::detect(client) {
                Protocol::Http1 => {
                    for (seed, mode) in [(0u8, 0u8), (1, 0), (6, 1), (7, 2)] {
                        let mut input = vec![seed, mode];
                        input.extend_from_slice(client);
                        corpus.put("h1_engine", &format!("{name}-{i}-{seed}-{mode}"), &input);
                    }
                    for seed in [0u8, 2, 5] {
                        let mut input = vec![seed];
                        input.extend_from_slice(client);
                        corpus.put("conn_h1", &format!("{name}-{i}-{seed}"), &input);
                    }
                    if let Some(body) = chunked_body(client) {
                        for (seed, budget) in [(0u8, 31u8), (3, 2)] {
                            let mut input = vec![seed, budget];
                            input.extend_from_slice(body);
                            corpus.put("chunked", &format!("{name}-{i}-{seed}"), &input);
                        }
                    }
                }
                Protocol::H2c => {
                    let rest = client.get(H2_PREFACE.len()..).unwrap_or(&[]);
                    for seed in [0u8, 2, 5] {
                        let mut input = vec![seed];
                        input.extend_from_slice(rest);
                        corpus.put("conn_h2c", &format!("{name}-{i}-{seed}"), &input);
                    }
                }
                Protocol::Unknown => {}
            }
        }
    }
    // A few chunked bodies of our own: extensions, trailers, upper-case hex.
    let made: [&[u8]; 4] = [
        b"5\r\nhello\r\n0\r\n\r\n",
        b"A;name=value;q=\"x y\"\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n",
        b"1\r\na\r\n1 ; ext\r\nb\r\n0\r\n\r\nrest",
        b"fFfFfFfFfFfFfFfF\r\n",
    ];
    for (i, body) in made.iter().enumerate() {
        let mut input = vec![i as u8, 4];
        input.extend_from_slice(body);
        corpus.put("chunked", &format!("made-{i}"), &input);
    }
    println!("{} seed files written", corpus.count);
}
