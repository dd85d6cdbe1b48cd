//! Certificates, keys and TLS configurations: loading PEM files, generating a self-signed
//! certificate, fingerprints, and building rustls server and client configs (always on the
//! *ring* provider, never a process-wide default).

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme, SupportedCipherSuite};

/// Errors of certificate and configuration handling. Each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file does not exist.
    #[error("{}: file not found", .0.display())]
    Missing(PathBuf),
    /// The file exists but cannot be read.
    #[error("{}: cannot read", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not valid PEM.
    #[error("{}: invalid PEM: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// The PEM file holds no `CERTIFICATE` block.
    #[error("{}: no certificate in PEM file", .0.display())]
    NoCertificate(PathBuf),
    /// The PEM file holds no private key block (PKCS#1, PKCS#8 or SEC1).
    #[error("{}: no private key in PEM file", .0.display())]
    NoPrivateKey(PathBuf),
    /// The key is of a kind the provider cannot sign with.
    #[error("{what}: unsupported private key: {reason}")]
    UnsupportedKey {
        /// The file (or "private key" when it did not come from a file).
        what: String,
        /// The provider's complaint.
        reason: String,
    },
    /// The private key is not the one of the certificate's public key.
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,
    /// No certificate was given.
    #[error("the certificate chain is empty")]
    EmptyChain,
    /// A CA certificate could not be used as a trust anchor.
    #[error("{}: unusable CA certificate: {reason}", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// rustls' complaint.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration")]
    Rustls(#[from] rustls::Error),
    /// Generating a certificate failed.
    #[error("certificate generation")]
    Generate(#[from] rcgen::Error),
}

#[cfg(feature = "deterministic-crypto")]
pub mod deterministic;

/// The crypto provider used for everything TLS in tapir.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => CertError::Missing(path.to_path_buf()),
        _ => CertError::Unreadable {
            path: path.to_path_buf(),
            source: e,
        },
    })
}

fn pem_error(path: &Path, e: pem::Error) -> CertError {
    CertError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Loads every certificate of a PEM file, end-entity first (as the file lists them).
pub fn load_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate(path.to_path_buf()));
    }
    Ok(chain)
}

/// Loads the first private key of a PEM file: RSA (PKCS#1 or PKCS#8), ECDSA P-256/P-384
/// (SEC1 or PKCS#8) or Ed25519 (PKCS#8). The key is checked to be usable for signing.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = read_file(path)?;
    let key = match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => return Err(CertError::NoPrivateKey(path.to_path_buf())),
        Err(e) => return Err(pem_error(path, e)),
    };
    check_key(&key, &path.display().to_string())?;
    Ok(key)
}

fn check_key(key: &PrivateKeyDer<'_>, what: &str) -> Result<(), CertError> {
    provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map(|_| ())
        .map_err(|e| CertError::UnsupportedKey {
            what: what.to_string(),
            reason: e.to_string(),
        })
}

/// A generated certificate with its key.
pub struct SelfSigned {
    /// The certificate (a chain of one).
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
    /// The certificate in PEM, to hand to clients as a CA file.
    pub cert_pem: String,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("SelfSigned")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Generates a self-signed ECDSA P-256 certificate whose subject alternative names are
/// `dns_names` and `ips`.
pub fn self_signed(
    dns_names: &[String],
    ips: &[std::net::IpAddr],
) -> Result<SelfSigned, CertError> {
    let mut params = rcgen::CertificateParams::new(dns_names.to_vec())?;
    for ip in ips {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(*ip));
    }
    let common_name = dns_names
        .first()
        .cloned()
        .or_else(|| ips.first().map(|ip| ip.to_string()))
        .unwrap_or_else(|| "tapir self-signed".to_string());
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key_pair)?;
    let key = PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    Ok(SelfSigned {
        chain: vec![cert.der().clone()],
        key,
        cert_pem: cert.pem(),
    })
}

/// The SHA-256 fingerprint of a certificate as `openssl x509 -fingerprint -sha256` shows it:
/// uppercase hex bytes joined by colons.
pub fn fingerprint_sha256(cert: &CertificateDer<'_>) -> String {
    // The provider's SHA-256 (the one of its TLS 1.3 AES-128-GCM suite), so no extra crate.
    let digest = match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256 {
        SupportedCipherSuite::Tls13(suite) => suite.common.hash_provider.hash(cert.as_ref()),
        // That suite is a TLS 1.3 one by definition; this arm cannot be taken.
        SupportedCipherSuite::Tls12(_) => return String::new(),
    };
    let mut out = String::with_capacity(95);
    for (i, byte) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        // Writing into a String cannot fail.
        let _ = write!(out, "{byte:02X}");
    }
    out
}

/// A server configuration (TLS 1.2 and 1.3) presenting `chain` with `key`, offering `alpn`
/// in order of preference. The key is checked against the certificate.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[Vec<u8>],
) -> Result<Arc<rustls::ServerConfig>, CertError> {
    server_config_with_versions(chain, key, alpn, rustls::DEFAULT_VERSIONS)
}

/// Like [`server_config`], limited to `versions` (e.g. `&[&rustls::version::TLS12]`).
pub fn server_config_with_versions(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[Vec<u8>],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Arc<rustls::ServerConfig>, CertError> {
    server_config_with_provider(provider(), chain, key, alpn, versions)
}

/// Like [`server_config_with_versions`], on `provider` instead of [`provider()`] (for
/// instance the seeded one of golden captures, `deterministic::provider`, with the
/// `deterministic-crypto` feature).
pub fn server_config_with_provider(
    provider: Arc<CryptoProvider>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[Vec<u8>],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Arc<rustls::ServerConfig>, CertError> {
    if chain.is_empty() {
        return Err(CertError::EmptyChain);
    }
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| CertError::UnsupportedKey {
                what: "private key".to_string(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(CertError::KeyMismatch)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            tracing::debug!("TLS: cannot check that the key matches the certificate");
        }
        Err(e) => return Err(CertError::Rustls(e)),
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}

/// Which certificates a client trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The Mozilla root programme (webpki-roots).
    WebPki,
    /// The certificates of a PEM file (for instance a server's self-signed certificate).
    CaFile(PathBuf),
    /// **Any certificate at all — no authentication. For tests only.** Handshake signatures
    /// are still checked, so the peer must hold the key of the certificate it shows.
    Insecure,
}

/// A client configuration (TLS 1.2 and 1.3) trusting `roots`, offering `alpn`.
pub fn client_config(
    roots: &Roots,
    alpn: &[Vec<u8>],
) -> Result<Arc<rustls::ClientConfig>, CertError> {
    client_config_with_versions(roots, alpn, rustls::DEFAULT_VERSIONS)
}

/// Like [`client_config`], limited to `versions` (e.g. `&[&rustls::version::TLS12]`).
pub fn client_config_with_versions(
    roots: &Roots,
    alpn: &[Vec<u8>],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Arc<rustls::ClientConfig>, CertError> {
    client_config_with_provider(provider(), roots, alpn, versions)
}

/// Like [`client_config_with_versions`], on `provider` instead of [`provider()`] (for
/// instance the seeded one of golden captures, `deterministic::provider`, with the
/// `deterministic-crypto` feature).
pub fn client_config_with_provider(
    provider: Arc<CryptoProvider>,
    roots: &Roots,
    alpn: &[Vec<u8>],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Arc<rustls::ClientConfig>, CertError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?;
    let mut config = match roots {
        Roots::WebPki => {
            let store = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(store).with_no_client_auth()
        }
        Roots::CaFile(path) => {
            let mut store = rustls::RootCertStore::empty();
            for cert in load_cert_chain(path)? {
                store.add(cert).map_err(|e| CertError::BadCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
        Roots::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert { provider }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}

/// **Insecure**: accepts every server certificate (tests only), but still checks handshake
/// signatures with the provider's algorithms.
#[derive(Debug)]
struct AcceptAnyCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "tapir-certs-{tag}-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).expect("write temp file");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn names() -> Vec<String> {
        vec!["localhost".to_string()]
    }

    /// A certificate and PEM key made by rcgen for `alg`.
    fn rcgen_pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let cert = rcgen::CertificateParams::new(names())
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    fn load_and_serve(dir: &TempDir, cert_pem: &str, key_pem: &str, tag: &str) {
        let cert = dir.write(&format!("{tag}.crt"), cert_pem);
        let key = dir.write(&format!("{tag}.key"), key_pem);
        let chain = load_cert_chain(&cert).expect("chain");
        let key = load_private_key(&key).expect("key");
        server_config(chain, key, &[b"http/1.1".to_vec()]).expect("server config");
    }

    #[test]
    fn ecdsa_and_ed25519_keys_load() {
        let dir = TempDir::new("ec");
        let (cert, key) = rcgen_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(key.contains("BEGIN PRIVATE KEY"), "PKCS#8");
        load_and_serve(&dir, &cert, &key, "p256");
        let (cert, key) = rcgen_pair(&rcgen::PKCS_ECDSA_P384_SHA384);
        load_and_serve(&dir, &cert, &key, "p384");
        let (cert, key) = rcgen_pair(&rcgen::PKCS_ED25519);
        load_and_serve(&dir, &cert, &key, "ed25519");
    }

    fn openssl(args: &[&str]) -> Option<String> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn rsa_and_sec1_keys_from_openssl_load() {
        let dir = TempDir::new("openssl");
        let rsa = dir.0.join("rsa.key");
        let rsa_path = rsa.to_string_lossy().into_owned();
        if openssl(&["genrsa", "-out", &rsa_path, "2048"]).is_none() {
            println!("SKIPPED: openssl is not available to generate an RSA key");
            return;
        }
        // PKCS#8 as written by OpenSSL 3, and the traditional PKCS#1 form.
        let pkcs1 = dir.0.join("rsa1.key");
        let pkcs1_path = pkcs1.to_string_lossy().into_owned();
        let converted = openssl(&["rsa", "-in", &rsa_path, "-traditional", "-out", &pkcs1_path]);
        let cert = dir.0.join("rsa.crt");
        let cert_path = cert.to_string_lossy().into_owned();
        let made = openssl(&[
            "req",
            "-new",
            "-x509",
            "-key",
            &rsa_path,
            "-out",
            &cert_path,
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ]);
        assert!(made.is_some(), "openssl req failed");
        let chain = load_cert_chain(&cert).expect("rsa chain");
        let key = load_private_key(&rsa).expect("rsa key");
        server_config(chain.clone(), key, &[]).expect("rsa server config");
        if converted.is_some() {
            let text = std::fs::read_to_string(&pkcs1).expect("read pkcs1");
            assert!(text.contains("BEGIN RSA PRIVATE KEY"), "{text}");
            let key = load_private_key(&pkcs1).expect("pkcs1 key");
            server_config(chain, key, &[]).expect("pkcs1 server config");
        }
        // SEC1 ("EC PRIVATE KEY").
        let ec = dir.0.join("ec.key");
        let ec_path = ec.to_string_lossy().into_owned();
        if openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &ec_path,
        ])
        .is_some()
        {
            let text = std::fs::read_to_string(&ec).expect("read sec1");
            assert!(text.contains("BEGIN EC PRIVATE KEY"), "{text}");
            load_private_key(&ec).expect("sec1 key");
        }
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let a = self_signed(&names(), &[]).expect("a");
        let b = self_signed(&names(), &[]).expect("b");
        let err = server_config(a.chain, b.key, &[]).expect_err("mismatch");
        assert!(matches!(err, CertError::KeyMismatch), "{err:?}");
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let path = Path::new("/nonexistent/tapir/server.pem");
        let err = load_cert_chain(path).expect_err("missing");
        assert!(matches!(err, CertError::Missing(_)), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/tapir/server.pem"),
            "{err}"
        );
        let err = load_private_key(path).expect_err("missing");
        assert!(
            err.to_string().contains("/nonexistent/tapir/server.pem"),
            "{err}"
        );
    }

    #[test]
    fn pem_without_key_or_cert_is_reported() {
        let dir = TempDir::new("nokey");
        let generated = self_signed(&names(), &[]).expect("cert");
        let cert_only = dir.write("cert.pem", &generated.cert_pem);
        let err = load_private_key(&cert_only).expect_err("no key");
        assert!(matches!(err, CertError::NoPrivateKey(_)), "{err:?}");
        assert!(err.to_string().contains("cert.pem"), "{err}");
        assert!(err.to_string().contains("no private key"), "{err}");

        let empty = dir.write("empty.pem", "not a pem file\n");
        let err = load_cert_chain(&empty).expect_err("no cert");
        assert!(matches!(err, CertError::NoCertificate(_)), "{err:?}");
        assert!(err.to_string().contains("empty.pem"), "{err}");
    }

    #[test]
    fn self_signed_has_ip_and_name_and_a_fingerprint() {
        let ip: std::net::IpAddr = "10.7.0.2".parse().expect("ip");
        let generated = self_signed(&names(), &[ip]).expect("cert");
        assert_eq!(generated.chain.len(), 1);
        assert!(generated
            .cert_pem
            .starts_with("-----BEGIN CERTIFICATE-----"));
        let fp = fingerprint_sha256(&generated.chain[0]);
        assert_eq!(fp.len(), 32 * 3 - 1, "{fp}");
        for (i, part) in fp.split(':').enumerate() {
            assert!(i < 32);
            assert_eq!(part.len(), 2, "{fp}");
            assert!(
                part.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()),
                "{fp}"
            );
        }
        // A known value: SHA-256 of the empty input.
        let empty = fingerprint_sha256(&CertificateDer::from(Vec::new()));
        assert!(empty.starts_with("E3:B0:C4:42:98:FC:1C:14"), "{empty}");
        // And the same as openssl's, when openssl is there.
        let dir = TempDir::new("fp");
        let path = dir.write("c.pem", &generated.cert_pem);
        let path = path.to_string_lossy().into_owned();
        match openssl(&["x509", "-in", &path, "-noout", "-fingerprint", "-sha256"]) {
            Some(out) => assert!(out.trim().ends_with(&fp), "openssl {out} vs {fp}"),
            None => println!("SKIPPED: openssl comparison (openssl not available)"),
        }
        // Both the name and the IP verify with the certificate as the only root.
        let ca = dir.write("ca.pem", &generated.cert_pem);
        client_config(&Roots::CaFile(ca), &[]).expect("client config");
    }

    #[test]
    fn unsupported_key_is_reported() {
        let dir = TempDir::new("bad");
        let path = dir.write(
            "bad.key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let err = load_private_key(&path).expect_err("garbage key");
        assert!(matches!(err, CertError::UnsupportedKey { .. }), "{err:?}");
        assert!(err.to_string().contains("bad.key"), "{err}");
    }
}
