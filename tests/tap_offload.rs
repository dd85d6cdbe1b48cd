//! Offloads through the virtio-net header on a real TAP device: with TSO and checksum
//! offload, with each refused in turn (the fallback), and with `--no-offload`, a 64 MiB
//! download by curl has the file's exact bytes; an upload through the kernel's own
//! super-frames is echoed whole; a capture taken with offloads on opens in tshark; a
//! persistent TAP is left without offloads when tapir exits.
//!
//! Each test makes its own network namespace (see `common::netns`) and needs root; without
//! root each prints `SKIPPED <test>: ...` and returns.

mod common;

use std::fs;

use common::netns::{count_before, output_text, sha256_file_hex, write_random_file, TAPIR_V6};
use common::tap::{stopped_line, CURL, PYTHON3, TSHARK};

const BASE: &str = "http://10.7.0.2";
/// Bytes downloaded per run.
const DOWNLOAD: u64 = 64 << 20;
/// MSS-sized frames a download of [`DOWNLOAD`] takes without segmentation offload (at
/// least): an MTU of 1500 leaves at most 1460 bytes per segment.
const PLAIN_FRAMES: u64 = DOWNLOAD / 1460;

#[test]
fn download_is_identical_with_offloads_refused_and_off() {
    let Some(ns) = tap_test!("offload-get", CURL) else {
        return;
    };
    let root = ns.dir().join("www");
    fs::create_dir_all(&root).unwrap();
    let file = root.join("big.bin");
    write_random_file(&file, DOWNLOAD, 15);
    let want = sha256_file_hex(&file);
    let got = ns.dir().join("got.bin");
    let url = format!("{BASE}/big.bin");

    // (extra flags, the offloads the log must report, whether frames may exceed the MSS).
    // --no-offload right after the offloads: the persistent TAP must not keep them.
    let runs: [(&[&str], &str, bool); 5] = [
        (&[], "offloads csum+tso4+tso6", true),
        (&["--no-offload"], "", false),
        (&["--refuse-offload", "tso"], "offloads csum", false),
        (&["--refuse-offload", "csum"], "offloads none", false),
        (&[], "offloads csum+tso4+tso6", true),
    ];
    for (extra, offloads, tso) in runs {
        let mut args = vec!["--root", root.to_str().unwrap()];
        args.extend_from_slice(extra);
        let tapir = ns.spawn_http(&args);
        if tso {
            // IPv6 too (TSO6); the frame count below then covers both downloads.
            let got6 = ns.dir().join("got6.bin");
            ns.curl_download(&format!("http://[{TAPIR_V6}]/big.bin"), &got6);
            assert_eq!(sha256_file_hex(&got6), want, "sha256 of the IPv6 download");
            fs::remove_file(&got6).unwrap();
        }
        ns.curl_download(&url, &got);
        let log = tapir.stop();
        assert!(
            log.contains(offloads),
            "{extra:?}: no '{offloads}' in:\n{log}"
        );
        if extra.is_empty() {
            assert!(!log.contains("refused"), "nothing refused:\n{log}");
        } else if extra[0] == "--refuse-offload" {
            assert!(
                log.contains("the kernel refused offloads"),
                "{extra:?}:\n{log}"
            );
        }
        assert_eq!(
            sha256_file_hex(&got),
            want,
            "sha256 of the download with {extra:?}"
        );
        let frames = count_before(stopped_line(&log), "out,");
        if tso {
            // One skb per up to 64 KB: far fewer frames than MSS-sized segments.
            assert!(
                frames < PLAIN_FRAMES / 4,
                "{frames} frames out with TSO (plain needs {PLAIN_FRAMES}):\n{log}"
            );
        } else {
            assert!(
                frames >= PLAIN_FRAMES,
                "{frames} frames out without TSO, want >= {PLAIN_FRAMES}:\n{log}"
            );
        }
        fs::remove_file(&got).unwrap();
    }
}

#[test]
fn upload_in_kernel_super_frames_is_echoed_whole() {
    let Some(ns) = tap_test!("offload-put", CURL) else {
        return;
    };
    let body = ns.dir().join("body.bin");
    write_random_file(&body, 16 << 20, 16);
    let echoed = ns.dir().join("echoed.bin");
    let tapir = ns.spawn_http(&[]);
    let out = ns.run(&[
        "curl",
        "-sS",
        "--max-time",
        "60",
        "--data-binary",
        &format!("@{}", body.display()),
        "-H",
        "Content-Type: application/octet-stream",
        "-o",
        echoed.to_str().unwrap(),
        "-w",
        "%{http_code}",
        &format!("{BASE}/echo"),
    ]);
    assert!(out.status.success(), "curl POST:\n{}", output_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let log = tapir.stop();
    assert_eq!(
        sha256_file_hex(&echoed),
        sha256_file_hex(&body),
        "the echoed body"
    );
    let line = stopped_line(&log);
    assert_eq!(count_before(line, "bad checksum"), 0, "{line}");
    // The kernel sent the upload in segments larger than the MSS (TSO on its side).
    let frames_in = count_before(line, "frames in,");
    assert!(
        frames_in < (16 << 20) / 1460 / 4,
        "{frames_in} frames in for 16 MiB: the kernel did not use TSO:\n{log}"
    );
}

#[test]
fn capture_with_offloads_opens_in_tshark() {
    let Some(ns) = tap_test!("offload-pcap", CURL, TSHARK) else {
        return;
    };
    let pcap = ns.dir().join("offload.pcap");
    let tapir = ns.spawn_http(&["--pcap", pcap.to_str().unwrap()]);
    let got = ns.dir().join("got.bin");
    ns.curl_download(&format!("{BASE}/bytes/4194304"), &got);
    let log = tapir.stop();
    assert!(log.contains("offloads csum+tso4+tso6"), "{log}");
    assert_eq!(fs::metadata(&got).unwrap().len(), 4 << 20);

    // Every frame, with TCP checksums validated: super-frames (larger than an MTU) are
    // there, and no TCP checksum is bad.
    let out = ns.run(&[
        "tshark",
        "-r",
        pcap.to_str().unwrap(),
        "-o",
        "tcp.check_checksum:TRUE",
        "-T",
        "fields",
        "-e",
        "frame.len",
        "-e",
        "tcp.checksum.status",
        "-Y",
        "tcp",
    ]);
    assert!(out.status.success(), "tshark -r:\n{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<(usize, String)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.parse().ok()?, f.next().unwrap_or("").to_string()))
        })
        .collect();
    assert!(
        rows.len() > 10,
        "tshark shows {} TCP frames:\n{text}",
        rows.len()
    );
    assert!(
        rows.iter().any(|(len, _)| *len > 1514),
        "no super-frame in the capture:\n{text}"
    );
    // tcp.checksum.status: 0 bad, 1 good, 2 unverified.
    assert!(
        rows.iter().any(|(_, s)| s == "1"),
        "tshark validated no checksum:\n{text}"
    );
    let bad: Vec<_> = rows.iter().filter(|(_, s)| s == "0").collect();
    assert!(
        bad.is_empty(),
        "{} frames with a bad TCP checksum:\n{text}",
        bad.len()
    );
}

/// Opens tap0 as a plain TAP reader (no virtio-net header: what a program that knows nothing
/// of offloads does), sends a UDP datagram from the kernel to 10.7.0.2 and prints whether
/// the frame read carries a complete UDP checksum.
const PLAIN_READER: &str = r#"
import fcntl, os, select, socket, struct
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"tap0", 0x0002 | 0x1000))  # TUNSETIFF: IFF_TAP|IFF_NO_PI
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x" * 1000, ("10.7.0.2", 9999))
while select.select([fd], [], [], 5)[0]:
    f = os.read(fd, 70000)
    if struct.unpack("!H", f[12:14])[0] != 0x0800 or f[23] != 17:
        continue
    ip = f[14:]; udp = ip[(ip[0] & 15) * 4:]
    data = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp)) + udp + b"\0" * (len(udp) % 2)
    t = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    print("complete" if t == 0xFFFF else "partial %04x" % t)
    break
else:
    print("no frame")
"#;

#[test]
fn a_persistent_tap_is_left_without_offloads() {
    let Some(ns) = tap_test!("offload-left", CURL, PYTHON3) else {
        return;
    };
    let tapir = ns.spawn_http(&[]);
    assert_eq!(
        ns.curl(&["-o", "/dev/null", "-w", "%{http_code}", BASE]),
        "200"
    );
    let log = tapir.stop();
    assert!(log.contains("offloads csum+tso4+tso6"), "{log}");
    // tapir is gone: the kernel must not think its next reader takes partial checksums.
    let mac = "02:00:00:00:00:02";
    let out = ns.run(&[
        "ip", "neigh", "replace", "10.7.0.2", "lladdr", mac, "dev", "tap0",
    ]);
    assert!(out.status.success(), "ip neigh:\n{}", output_text(&out));
    let out = ns.run(&["python3", "-c", PLAIN_READER]);
    assert!(out.status.success(), "plain reader:\n{}", output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "complete",
        "the UDP checksum a plain reader of the TAP gets after tapir exited"
    );
}
