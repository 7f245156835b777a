//! TLS for the web server: load a PEM certificate and key, or make a self-signed pair for
//! development so that `getUserMedia` (secure contexts only) works out of the box.

use std::{
    fs,
    io::BufReader,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoPrivateKey { path: PathBuf },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("certificate and key do not form a usable TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("--cert and --key must be given together")]
    HalfPair,
}

/// Where the certificate came from, for the startup message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    Given,
    Generated { names: Vec<String> },
    Reused,
}

pub struct TlsMaterial {
    pub config: Arc<rustls::ServerConfig>,
    pub cert_path: PathBuf,
    pub source: CertSource,
}

/// Uses `cert`/`key` when given; otherwise `cert_dir/cert.pem` and `cert_dir/key.pem`,
/// generating them first if they do not exist.
pub fn load_or_generate(
    cert: Option<&Path>,
    key: Option<&Path>,
    cert_dir: &Path,
) -> Result<TlsMaterial, TlsError> {
    let (cert_path, key_path, source) = match (cert, key) {
        (Some(cert), Some(key)) => (cert.to_path_buf(), key.to_path_buf(), CertSource::Given),
        (None, None) => {
            let cert_path = cert_dir.join("cert.pem");
            let key_path = cert_dir.join("key.pem");
            if cert_path.exists() && key_path.exists() {
                (cert_path, key_path, CertSource::Reused)
            } else {
                let names = self_signed_names();
                generate(&names, &cert_path, &key_path)?;
                (cert_path, key_path, CertSource::Generated { names })
            }
        }
        _ => return Err(TlsError::HalfPair),
    };
    let config = server_config(&cert_path, &key_path)?;
    Ok(TlsMaterial {
        config,
        cert_path,
        source,
    })
}

fn self_signed_names() -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = gethostname::gethostname().into_string() {
        if !host.is_empty() && !names.contains(&host) {
            names.push(host);
        }
    }
    names
}

fn generate(names: &[String], cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    if let Some(dir) = cert_path.parent() {
        fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    write_private(key_path, certified.signing_key.serialize_pem().as_bytes())?;
    fs::write(cert_path, certified.cert.pem()).map_err(|source| TlsError::Write {
        path: cert_path.to_path_buf(),
        source,
    })
}

/// Writes the key readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let error = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    options
        .open(path)
        .map_err(error)?
        .write_all(contents)
        .map_err(error)
}

fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = read_certs(cert_path)?;
    let key = read_key(key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn open(path: &Path) -> Result<BufReader<fs::File>, TlsError> {
    fs::File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoPrivateKey {
            path: path.to_path_buf(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("signal-tls-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generates_then_reuses() {
        let dir = temp_dir("gen");
        let first = load_or_generate(None, None, &dir).unwrap();
        assert!(
            matches!(first.source, CertSource::Generated { ref names } if names.contains(&"localhost".to_owned()))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "private key must not be group/world readable"
            );
        }
        let second = load_or_generate(None, None, &dir).unwrap();
        assert_eq!(second.source, CertSource::Reused);
        let given = load_or_generate(
            Some(&dir.join("cert.pem")),
            Some(&dir.join("key.pem")),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(given.source, CertSource::Given);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn clear_errors() {
        let dir = temp_dir("err");
        fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        fs::write(&empty, "not pem").unwrap();
        assert!(matches!(
            load_or_generate(Some(&empty), Some(&empty), &dir),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(matches!(
            load_or_generate(Some(&dir.join("missing.pem")), Some(&empty), &dir),
            Err(TlsError::Read { .. })
        ));
        assert!(matches!(
            load_or_generate(Some(&empty), None, &dir),
            Err(TlsError::HalfPair)
        ));
        fs::remove_dir_all(dir).unwrap();
    }
}
