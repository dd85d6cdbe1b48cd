//! nginx on the kernel side of a test namespace: a server the project did not write, for
//! the client and proxy tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::netns::{ChildGuard, Netns, KERNEL_V4};

/// An nginx serving `root` on the kernel side (10.7.0.1), HTTP on 80 and HTTPS (h2 and
/// http/1.1 by ALPN) on 443.
pub struct Nginx {
    _child: ChildGuard,
    /// The server certificate (also the CA file clients trust).
    pub cert: PathBuf,
    /// The document root.
    pub root: PathBuf,
}

pub fn sha256_file(path: &Path) -> String {
    let data = fs::read(path).expect("read file");
    format!("{:x}", Sha256::digest(&data))
}

/// A self-signed server certificate (not a CA: WebPKI refuses a CA as the end entity) for
/// `name` and the kernel side's address.
pub fn make_cert(dir: &Path, name: &str, cert: &Path, key: &Path) {
    let config = dir.join(format!("{name}.cnf"));
    let text = format!(
        "[req]\ndistinguished_name = dn\nx509_extensions = v3\nprompt = no\n[dn]\nCN = {name}\n\
         [v3]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = DNS:{name},IP:{KERNEL_V4}\n"
    );
    fs::write(&config, text).unwrap();
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-config"])
        .arg(&config)
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl made the certificate");
}

pub fn start_nginx(ns: &Netns) -> Nginx {
    let dir = ns.dir().join("nginx");
    let root = dir.join("root");
    fs::create_dir_all(dir.join("logs")).unwrap();
    fs::create_dir_all(&root).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    make_cert(&dir, "origin.test", &cert, &key);
    fs::write(root.join("index.html"), "<p>hello from nginx</p>\n").unwrap();
    let conf = format!(
        "daemon off;\nmaster_process off;\nuser root;\npid {dir}/nginx.pid;\nerror_log {dir}/logs/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  log_format port '$remote_port $request';\n  access_log {dir}/logs/access.log port;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
           fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
           server {{\n    listen {ip}:80;\n    location = /old {{ return 302 /index.html; }}\n    listen {ip}:443 ssl http2;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    root {root};\n  }}\n}}\n",
        dir = dir.display(),
        ip = KERNEL_V4,
        cert = cert.display(),
        key = key.display(),
        root = root.display(),
    );
    let conf_path = dir.join("nginx.conf");
    fs::write(&conf_path, conf).unwrap();
    let child: Child = ns
        .exec(&[
            "nginx",
            "-c",
            conf_path.to_str().unwrap(),
            "-p",
            dir.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let guard = ChildGuard(child);
    // Wait until nginx answers on the kernel side.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = ns
            .exec(&[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "1",
                &format!("http://{KERNEL_V4}/"),
            ])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "nginx did not start");
        thread::sleep(Duration::from_millis(100));
    }
    Nginx {
        _child: guard,
        cert,
        root,
    }
}
