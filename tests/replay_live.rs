//! Live replay of real captures (captures/real/) against `tapir serve --root
//! captures/real/site` on the in-memory link, with `--expect` semantics, and fault shapes
//! made by editing the frames of a real capture. No privileges needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use tapir::device::pcap_reader::{read_capture, CaptureReadError, CapturedFrame};
use tapir::replay::live::exchanges::Protocol;
use tapir::replay::live::flows::parse_segment;
use tapir::replay::live::{replay_live, LiveConfig, LiveError, LiveReport, Pace, Site};

fn real(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures/real")
        .join(name)
}

fn site_config() -> LiveConfig {
    LiveConfig {
        site: Site::Files(real("site")),
        ..LiveConfig::default()
    }
}

fn frames(name: &str) -> Vec<CapturedFrame> {
    read_capture(&real(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn replay(frames: &[CapturedFrame]) -> LiveReport {
    replay_live(frames, &site_config()).expect("replay runs")
}

fn all_notes(report: &LiveReport) -> String {
    let mut notes = report.notes.join("\n");
    for flow in &report.flows {
        notes.push('\n');
        notes.push_str(&flow.notes.join("\n"));
    }
    notes
}

/// Replays a real capture with --expect semantics and checks its shape.
fn check_real(name: &str, flows: usize, exchanges: &[(&str, &str, u16)]) -> LiveReport {
    let report = replay(&frames(name));
    let mismatches = report.mismatches();
    assert!(mismatches.is_empty(), "{name}: {mismatches:?}\n{report:#?}");
    // Flows that carried no bytes at all (ab opens one more connection than it uses with
    // tapir) are replayed too but hold no exchange.
    let used = report.flows.iter().filter(|f| f.to_send > 0).count();
    assert_eq!(used, flows, "{name}: flows\n{report:#?}");
    let got: Vec<(String, String, u16)> = report
        .flows
        .iter()
        .flat_map(|f| &f.exchanges)
        .map(|e| {
            (
                e.request.method.clone(),
                e.request.path.clone(),
                e.got.as_ref().map_or(0, |r| r.status),
            )
        })
        .collect();
    let want: Vec<(String, String, u16)> = exchanges
        .iter()
        .map(|(m, p, s)| (m.to_string(), p.to_string(), *s))
        .collect();
    assert_eq!(got, want, "{name}");
    assert_eq!(
        report.compared(),
        exchanges.len(),
        "{name}: every exchange compared"
    );
    for flow in &report.flows {
        assert_eq!(flow.sent, flow.to_send, "{name}: every client byte sent");
        for ex in &flow.exchanges {
            let (got, want) = (ex.got.as_ref().unwrap(), ex.expected.as_ref().unwrap());
            assert!(got.complete, "{name}: {ex:?}");
            if got.status == 200 && ex.request.method != "HEAD" {
                assert_eq!(got.body_len, want.body_len, "{name}: {ex:?}");
            }
        }
    }
    report
}

const KEEPALIVE: &[(&str, &str, u16)] = &[
    ("GET", "/index.html", 200),
    ("GET", "/style.css", 200),
    ("GET", "/data/blob.bin", 200),
    ("GET", "/missing.html", 404),
];

#[test]
fn curl_captures_replay_with_the_same_answers() {
    for server in ["nginx", "tapir"] {
        check_real(&format!("curl-get-{server}.pcap"), 1, &[("GET", "/", 200)]);
        check_real(&format!("curl-keepalive-{server}.pcap"), 1, KEEPALIVE);
        check_real(
            &format!("curl-chunked-post-{server}.pcap"),
            1,
            &[("POST", "/page.html", 405)],
        );
        let report = check_real(
            &format!("curl-ipv6-{server}.pcapng"),
            1,
            &[("GET", "/page.html", 200)],
        );
        assert!(report.flows[0].client.is_ipv6());
    }
}

#[test]
fn wget_and_python_captures_replay_with_the_same_answers() {
    for server in ["nginx", "tapir"] {
        check_real(
            &format!("wget-{server}.pcap"),
            1,
            &[("GET", "/page.html", 200)],
        );
        // Recorded on "any": Linux cooked frames.
        check_real(
            &format!("python-{server}.pcap"),
            1,
            &[
                ("GET", "/", 200),
                ("HEAD", "/style.css", 200),
                ("GET", "/data/blob.bin", 200),
            ],
        );
    }
}

#[test]
fn h2c_captures_replay_with_the_same_answers() {
    for server in ["nginx", "tapir"] {
        let report = check_real(
            &format!("nghttp-{server}.pcap"),
            1,
            &[("GET", "/index.html", 200), ("GET", "/style.css", 200)],
        );
        assert_eq!(report.flows[0].protocol, Protocol::H2c);
        let report = check_real(
            &format!("h2load-{server}.pcap"),
            2,
            &[("GET", "/index.html", 200); 10],
        );
        assert!(report.flows.iter().all(|f| f.protocol == Protocol::H2c));
    }
}

#[test]
fn ab_captures_replay_ten_flows_at_once() {
    for server in ["nginx", "tapir"] {
        check_real(
            &format!("ab-{server}.pcap"),
            10,
            &[("GET", "/index.html", 200); 10],
        );
    }
}

#[test]
fn fast_and_scaled_pacing_give_the_same_answers() {
    let frames = frames("curl-keepalive-nginx.pcap");
    for pace in [Pace::Fast, Pace::Speed(0.25), Pace::Speed(10.0)] {
        let config = LiveConfig {
            pace,
            ..site_config()
        };
        let report = replay_live(&frames, &config).unwrap();
        assert!(report.mismatches().is_empty(), "{pace:?}: {report:#?}");
        assert_eq!(report.compared(), 4, "{pace:?}");
    }
    let bad = LiveConfig {
        pace: Pace::Speed(0.0),
        ..site_config()
    };
    assert!(matches!(
        replay_live(&frames, &bad),
        Err(LiveError::BadSpeed(_))
    ));
}

/// Indexes of frames carrying TCP payload from the client (to port 80) / from the server.
fn data_frames(frames: &[CapturedFrame], to_server: bool) -> Vec<usize> {
    frames
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let s = parse_segment(&f.data).ok()?;
            let up = s.dst.port() == 80 || s.dst.port() == 8080;
            (up == to_server && !s.payload.is_empty()).then_some(i)
        })
        .collect()
}

#[test]
fn a_retransmitted_segment_is_replayed_once() {
    let mut frames = frames("curl-keepalive-nginx.pcap");
    let up = data_frames(&frames, true);
    let down = data_frames(&frames, false);
    // The first request again, later; and a server segment twice.
    let mut again = frames[up[0]].clone();
    again.time += std::time::Duration::from_millis(1);
    frames.insert(up[1], again);
    let dup = frames[down[2] + 1].clone();
    frames.insert(down[2] + 2, dup);
    let report = replay(&frames);
    assert!(report.mismatches().is_empty(), "{report:#?}");
    assert_eq!(report.compared(), 4);
    assert!(all_notes(&report).contains("retransmitted"), "{report:#?}");
}

/// A copy of an IPv4 TCP frame carrying `payload[from..to]` of the original segment (sequence
/// number and IP length adjusted; checksums are not checked by the replay).
fn slice_segment(frame: &CapturedFrame, from: usize, to: usize) -> CapturedFrame {
    let d = &frame.data;
    assert_eq!(&d[12..14], &[0x08, 0x00], "an IPv4 frame");
    let ihl = usize::from(d[14] & 0x0f) * 4;
    let tcp = 14 + ihl;
    let doff = usize::from(d[tcp + 12] >> 4) * 4;
    let start = tcp + doff;
    let mut out = d[..start].to_vec();
    out.extend_from_slice(&d[start + from..start + to]);
    let total = u16::try_from(ihl + doff + (to - from)).unwrap();
    out[16..18].copy_from_slice(&total.to_be_bytes());
    let seq = u32::from_be_bytes(d[tcp + 4..tcp + 8].try_into().unwrap());
    let seq = seq.wrapping_add(u32::try_from(from).unwrap());
    out[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
    CapturedFrame {
        time: frame.time,
        data: out,
        truncated: false,
    }
}

#[test]
fn a_reordered_overlapping_pair_is_put_back_in_order() {
    let mut frames = frames("curl-keepalive-nginx.pcap");
    // The largest server segment (part of the 20000-byte response) becomes two overlapping
    // segments, the second one first.
    let down = data_frames(&frames, false);
    let big = *down.iter().max_by_key(|&&i| frames[i].data.len()).unwrap();
    let len = parse_segment(&frames[big].data).unwrap().payload.len();
    assert!(len > 1000, "{len}");
    let first = slice_segment(&frames[big], 0, 1000);
    let second = slice_segment(&frames[big], 800, len);
    frames.splice(big..=big, [second, first]);
    let report = replay(&frames);
    assert!(report.mismatches().is_empty(), "{report:#?}");
    assert_eq!(report.compared(), 4);
    let blob = report.flows[0].exchanges[2].expected.as_ref().unwrap();
    assert_eq!(
        (blob.status, blob.body_len, blob.complete),
        (200, 20000, true)
    );
    assert!(all_notes(&report).contains("out-of-order"), "{report:#?}");
}

#[test]
fn a_flow_missing_its_syn_is_skipped_with_a_note() {
    let mut frames = frames("ab-nginx.pcap");
    let first_syn = frames
        .iter()
        .position(|f| parse_segment(&f.data).is_ok_and(|s| s.flags & 0x12 == 0x02))
        .unwrap();
    frames.remove(first_syn);
    let report = replay(&frames);
    assert_eq!(report.flows.len(), 9);
    assert!(report.mismatches().is_empty(), "{report:#?}");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("SYN is not in the capture")),
        "{:?}",
        report.notes
    );
    // A capture whose only flow lost its SYN has nothing to replay: a clear error.
    let mut frames = self::frames("curl-get-nginx.pcap");
    frames.remove(0);
    let err = replay_live(&frames, &site_config()).unwrap_err();
    assert!(err.to_string().contains("SYN"), "{err}");
}

#[test]
fn a_truncated_frame_ends_the_client_stream_with_a_note() {
    let mut frames = frames("curl-keepalive-nginx.pcap");
    let up = data_frames(&frames, true);
    // The second request is cut by a 100-byte snap length.
    let f = &mut frames[up[1]];
    f.data.truncate(100);
    f.truncated = true;
    let report = replay(&frames);
    let notes = all_notes(&report);
    assert!(notes.contains("snap length"), "{notes}");
    assert!(notes.contains("missing from the capture"), "{notes}");
    let flow = &report.flows[0];
    assert!(flow.sent < flow.to_send + 1 && flow.sent > 0);
    // Only the first request is whole before the hole.
    assert_eq!(flow.exchanges.len(), 1);
    assert!(report.mismatches().is_empty(), "{report:#?}");
}

#[test]
fn a_lost_client_segment_and_a_cut_end_are_noted() {
    let mut frames = frames("curl-keepalive-nginx.pcap");
    let up = data_frames(&frames, true);
    frames.remove(up[2]);
    let report = replay(&frames);
    let notes = all_notes(&report);
    assert!(notes.contains("missing from the capture"), "{notes}");
    assert_eq!(report.flows[0].exchanges.len(), 2);
    assert!(report.mismatches().is_empty());
    // Cut in the middle of the third response.
    let mut frames = self::frames("curl-keepalive-nginx.pcap");
    let down = data_frames(&frames, false);
    frames.truncate(down[3]);
    let report = replay(&frames);
    let notes = all_notes(&report);
    assert!(notes.contains("capture ends while"), "{notes}");
    assert!(report.mismatches().is_empty(), "{report:#?}");
}

#[test]
fn a_corrupt_pcap_header_is_a_clear_error() {
    let bytes = std::fs::read(real("curl-get-nginx.pcap")).unwrap();
    let dir = std::env::temp_dir().join(format!("tapir-replay-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("corrupt.pcap");
    let mut corrupt = bytes.clone();
    corrupt[..4].copy_from_slice(b"JUNK");
    std::fs::write(&path, &corrupt).unwrap();
    let err = read_capture(&path).unwrap_err();
    assert!(matches!(err, CaptureReadError::Format { .. }), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_tapir"))
        .args(["replay", "--expect"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a pcap"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn cli_expect_passes_on_the_site_and_names_the_mismatch_elsewhere() {
    let file = real("curl-keepalive-tapir.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_tapir"))
        .args(["replay", "--expect", "--root"])
        .arg(real("site"))
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("GET /data/blob.bin → 200 20000 bytes"),
        "{stdout}"
    );
    assert!(stdout.contains("4 exchanges compared"), "{stdout}");
    // The built-in site has no /index.html: the first exchange differs.
    let out = Command::new(env!("CARGO_BIN_EXE_tapir"))
        .args(["replay", "--expect", "--fast"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout
            .contains("MISMATCH flow 0 exchange 1 (GET /index.html): status expected 200, got 404"),
        "{stdout}"
    );
}
