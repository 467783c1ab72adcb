//! The cluster's mutual-TLS identity: generating the CA and certificates (`consentry certs
//! init`), loading them, building quinn configurations, and reading a node id back out of a
//! peer's certificate.
//!
//! A node's identity is the DNS name in its certificate (`node-<id>.consentry`): servers
//! require a client certificate signed by the cluster CA, clients dial a peer with the peer's
//! node name as server name, so both ends of every connection know who the other is. Agents
//! get `agent-<name>.consentry`. Only TLS 1.3 with the `ring` provider is used, passed
//! explicitly; no process-wide default provider is installed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::types::NodeId;

/// The ALPN protocol both sides of a raft connection must offer.
pub const ALPN: &[u8] = ALPN_NAME.as_bytes();
/// [`ALPN`] as text, for messages. The number is the wire protocol's version: raise it with
/// any change to what nodes send each other, including [`crate::codec::FORMAT_VERSION`]
/// (`consentry/2` was format 1, the first with a format header, and the admin RPCs;
/// `consentry/3` is format 2: runbooks, recovery dispatches and agent reports), so a peer
/// that would misread the frames is refused at the handshake.
pub const ALPN_NAME: &str = "consentry/3";

/// DNS suffix of every identity the cluster CA issues.
pub const NAME_SUFFIX: &str = ".consentry";

/// Longest agent name: a DNS label is at most 63 bytes, and `agent-` takes 6 of them.
pub const AGENT_NAME_BYTES_MAX: usize = 63 - AGENT_PREFIX.len();

/// Size of the API token before hex encoding (64 hex characters).
pub const API_TOKEN_BYTES: usize = 32;

/// Largest PEM file `TlsMaterial::load` reads: a bound on what a wrong path can make us read.
pub const PEM_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Bytes of the CA key's identifier shown in the CA's name.
const CA_NAME_ID_BYTES: usize = 8;
const NODE_PREFIX: &str = "node-";
const AGENT_PREFIX: &str = "agent-";
const CA_KEY_FILE: &str = "ca.key";
const CA_CERT_FILE: &str = "ca.pem";
const API_TOKEN_FILE: &str = "api.token";
#[cfg(unix)]
const SECRET_FILE_MODE: u32 = 0o600;

/// Why generating, loading or interpreting TLS material failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "refusing to generate certificates: {} already exists; remove the directory or choose \
         another --dir (re-running would replace the cluster CA)",
        path.display()
    )]
    CaKeyExists { path: PathBuf },
    #[error("creating certificate directory {} failed: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("writing {} failed: {source}", path.display())]
    WriteFile { path: PathBuf, source: io::Error },
    #[error("reading {} failed: {source}", path.display())]
    ReadFile { path: PathBuf, source: io::Error },
    #[error("reading {} failed: {reason}", path.display())]
    ParsePem { path: PathBuf, reason: String },
    #[error("generating certificates needs at least one node id (--nodes 1,2,3)")]
    NoNodes,
    #[error("node id {id} is listed more than once")]
    DuplicateNode { id: NodeId },
    #[error(
        "invalid agent name {name:?}: {reason} (use 1 to {AGENT_NAME_BYTES_MAX} lowercase \
         letters, digits or '-', not starting or ending with '-')"
    )]
    AgentName { name: String, reason: &'static str },
    #[error("agent name {name:?} is listed more than once")]
    DuplicateAgent { name: String },
    #[error("generating the certificate for {name} failed: {source}")]
    Generate { name: String, source: rcgen::Error },
    #[error("drawing random bytes for the API token failed")]
    Random,
    #[error("building the TLS {side} configuration from {origin} failed: {reason}")]
    Config {
        side: &'static str,
        origin: String,
        reason: String,
    },
    #[error("parsing a certificate failed: {reason}")]
    ParseCert { reason: String },
    #[error(
        "certificate names no node identity (expected exactly one `node-<id>.consentry` DNS \
         name; found {names:?})"
    )]
    NoNodeName { names: Vec<String> },
    #[error("certificate names more than one node identity: {names:?}")]
    ManyNodeNames { names: Vec<String> },
}

/// The CA roots, our certificate chain and our private key, ready to build quinn configs.
#[derive(Debug)]
pub struct TlsMaterial {
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Where the material came from, for error messages.
    origin: String,
}

impl TlsMaterial {
    /// A 32-byte secret derived from this node's private key, stable across restarts.
    ///
    /// Used as the QUIC stateless-reset key: a restarted node answers packets of a
    /// connection it no longer knows with a reset its peers can verify, so they drop the
    /// dead connection at once instead of waiting for the idle timeout.
    pub fn stable_secret(&self, label: &str) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"consentry/");
        ctx.update(label.as_bytes());
        ctx.update(b"\0");
        ctx.update(self.key.secret_der());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// Loads the cluster CA, our certificate chain and our private key from PEM files.
    ///
    /// # Errors
    /// [`TlsError::ReadFile`] or [`TlsError::ParsePem`] naming the file that is missing,
    /// unreadable, too large or holds no certificate / private key; [`TlsError::Config`] when
    /// the certificate and key do not form a usable identity.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let ca_pem = read_pem_file(ca)?;
        let cert_pem = read_pem_file(cert)?;
        let key_pem = read_pem_file(key)?;
        let material = Self {
            ca: parse_certs(ca, &ca_pem)?,
            chain: parse_certs(cert, &cert_pem)?,
            key: parse_key(key, &key_pem)?,
            origin: format!(
                "ca {}, cert {}, key {}",
                ca.display(),
                cert.display(),
                key.display()
            ),
        };
        // Build both configs once so a key that does not match its certificate, or a CA
        // file that is not a CA, fails here with the file names rather than at first use.
        material.server_crypto()?;
        material.client_crypto()?;
        Ok(material)
    }

    /// The cluster's identity: SHA-256 of the (first) CA certificate, lower-case hex. Every
    /// node of one cluster has the same; a new `certs init` makes a new one.
    pub fn ca_fingerprint(&self) -> String {
        let der = self.ca.first().map_or(&[][..], |c| c.as_ref());
        ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Checks that our own certificate chains to our CA for our node name, as a peer's
    /// handshake will check it (used before a reloaded certificate replaces a working one).
    ///
    /// # Errors
    /// [`TlsError::Config`] with rustls' reason (unknown issuer, bad signature, wrong name,
    /// expired).
    pub fn verify_own_chain(&self) -> Result<(), TlsError> {
        use rustls::client::danger::ServerCertVerifier as _;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            self.roots("client")?,
            provider,
        )
        .build()
        .map_err(|e| self.config_error("client", &e))?;
        let leaf = self.chain.first().ok_or_else(|| TlsError::Config {
            side: "client",
            origin: self.origin.clone(),
            reason: "no certificate".into(),
        })?;
        let id = self.node_id()?;
        let name = rustls::pki_types::ServerName::try_from(node_server_name(id))
            .map_err(|e| self.config_error("client", &e))?;
        verifier
            .verify_server_cert(
                leaf,
                &self.chain[1..],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .map(|_| ())
            .map_err(|e| self.config_error("client", &e))
    }

    /// SHA-256 of our own certificate, lower-case hex (logged when it is loaded, so an
    /// operator can tell which certificate a node presents).
    pub fn cert_fingerprint(&self) -> String {
        let der = self.chain.first().map_or(&[][..], |c| c.as_ref());
        hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
    }

    /// The node id our own certificate names.
    ///
    /// # Errors
    /// When our certificate names no node, or more than one (an agent certificate, say).
    pub fn node_id(&self) -> Result<NodeId, TlsError> {
        let leaf = self.chain.first().ok_or_else(|| TlsError::ParseCert {
            reason: format!("no certificate in {}", self.origin),
        })?;
        node_id_from_cert(leaf)
    }

    /// A quinn server config that requires a client certificate signed by the cluster CA and
    /// speaks only [`ALPN`].
    ///
    /// # Errors
    /// [`TlsError::Config`] when rustls or quinn reject the material.
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let crypto = self.server_crypto()?;
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
            .map_err(|e| self.config_error("server", &e))?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
    }

    /// A quinn client config that trusts only the cluster CA, presents our certificate and
    /// speaks only [`ALPN`].
    ///
    /// # Errors
    /// [`TlsError::Config`] when rustls or quinn reject the material.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let crypto = self.client_crypto()?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
            .map_err(|e| self.config_error("client", &e))?;
        Ok(quinn::ClientConfig::new(Arc::new(quic)))
    }

    fn roots(&self, side: &'static str) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in &self.ca {
            roots
                .add(ca.clone())
                .map_err(|e| self.config_error(side, &e))?;
        }
        Ok(Arc::new(roots))
    }

    fn server_crypto(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots("server")?, provider.clone())
                .build()
                .map_err(|e| self.config_error("server", &e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| self.config_error("server", &e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| self.config_error("server", &e))?;
        // Agents connect to the same endpoint with their own protocol; the accept loop
        // serves each connection by the protocol it negotiated.
        config.alpn_protocols = vec![ALPN.to_vec(), crate::agent::ALPN.to_vec()];
        Ok(config)
    }

    /// A quinn client config for a host agent: trusts only the cluster CA, presents the
    /// agent's certificate and speaks only [`crate::agent::ALPN`].
    ///
    /// # Errors
    /// [`TlsError::Config`] when rustls or quinn reject the material.
    pub fn agent_client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let mut crypto = self.client_crypto()?;
        crypto.alpn_protocols = vec![crate::agent::ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
            .map_err(|e| self.config_error("client", &e))?;
        Ok(quinn::ClientConfig::new(Arc::new(quic)))
    }

    /// The agent name our own certificate names (`agent-<name>.consentry`).
    ///
    /// # Errors
    /// When our certificate names no agent, or more than one (a node certificate, say).
    pub fn agent_name(&self) -> Result<String, TlsError> {
        let leaf = self.chain.first().ok_or_else(|| TlsError::ParseCert {
            reason: format!("no certificate in {}", self.origin),
        })?;
        agent_name_from_cert(leaf)
    }

    pub(crate) fn client_crypto(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| self.config_error("client", &e))?
            .with_root_certificates(self.roots("client")?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| self.config_error("client", &e))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    fn config_error(&self, side: &'static str, e: &dyn std::fmt::Display) -> TlsError {
        TlsError::Config {
            side,
            origin: self.origin.clone(),
            reason: e.to_string(),
        }
    }
}

/// Writes a new cluster CA, one certificate and key per node and per agent, and an API token
/// into `dir` (created if missing).
///
/// Files: `ca.pem`, `ca.key`, `node-<id>.pem`, `node-<id>.key`, `agent-<name>.pem`,
/// `agent-<name>.key`, `api.token` (64 hex characters, no newline). Keys and the token are
/// written with mode 0600. Node certificates carry the DNS name `node-<id>.consentry` and
/// are valid for both TLS server and client use; agent certificates carry
/// `agent-<name>.consentry`.
///
/// Validity is rcgen's fixed window (1975 to 4096): this crate reads no clock, and the
/// identity is revoked by replacing the CA. `ca.key` is written last, so a run that fails
/// half way can simply be repeated.
///
/// # Errors
/// [`TlsError::CaKeyExists`] when `dir/ca.key` already exists (nothing is written then);
/// invalid or duplicate node ids or agent names; any file that cannot be written (named in
/// the error).
pub fn generate(dir: &Path, nodes: &[NodeId], agents: &[String]) -> Result<(), TlsError> {
    validate_names(nodes, agents)?;
    let ca_key_path = dir.join(CA_KEY_FILE);
    if ca_key_path.exists() {
        return Err(TlsError::CaKeyExists { path: ca_key_path });
    }
    fs::create_dir_all(dir).map_err(|source| TlsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;

    let ca_key = new_key("the cluster CA")?;
    // A name unique to this CA: certificates from two `certs init` runs then fail with
    // "unknown issuer" rather than a confusing signature error.
    let ca_id = CertificateParams::default().key_identifier(&ca_key);
    let ca_name = format!(
        "consentry cluster CA {}",
        hex(&ca_id[..ca_id.len().min(CA_NAME_ID_BYTES)])
    );
    let ca_params = ca_params(&ca_name);
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|source| TlsError::Generate {
            name: ca_name.clone(),
            source,
        })?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);
    write_public(&dir.join(CA_CERT_FILE), ca_cert.pem().as_bytes())?;

    for id in nodes {
        let stem = format!("{NODE_PREFIX}{id}");
        write_leaf(dir, &stem, &issuer)?;
    }
    for agent in agents {
        let stem = format!("{AGENT_PREFIX}{agent}");
        write_leaf(dir, &stem, &issuer)?;
    }

    let mut token = [0u8; API_TOKEN_BYTES];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut token)
        .map_err(|_| TlsError::Random)?;
    write_secret(&dir.join(API_TOKEN_FILE), hex(&token).as_bytes(), false)?;

    write_secret(&ca_key_path, ca_key_pem.as_bytes(), true)
}

/// Issues new certificates from the CA that `generate` wrote into `dir` (`ca.pem` and
/// `ca.key`): for new members, or to rotate existing ones (their files are replaced; a
/// running node picks them up on SIGHUP). Returns the certificate files written.
///
/// # Errors
/// `ReadFile`/`ParsePem` when the CA files are missing or unreadable, `Generate` when the
/// CA key does not match what the CA certificate needs, and the name and write errors of
/// [`generate`].
pub fn issue(dir: &Path, nodes: &[NodeId], agents: &[String]) -> Result<Vec<PathBuf>, TlsError> {
    if nodes.is_empty() && agents.is_empty() {
        return Err(TlsError::NoNodes);
    }
    if nodes.is_empty() {
        agents.iter().try_for_each(|a| validate_agent_name(a))?;
    } else {
        validate_names(nodes, agents)?;
    }
    let ca_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    let ca_pem = read_pem_file(&ca_path)?;
    let key_pem = String::from_utf8(read_pem_file(&key_path)?).map_err(|_| TlsError::ParsePem {
        path: key_path.clone(),
        reason: "not UTF-8 PEM".into(),
    })?;
    let ca_key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::ParsePem {
        path: key_path.clone(),
        reason: e.to_string(),
    })?;
    let ca_der = parse_certs(&ca_path, &ca_pem)?
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::ParsePem {
            path: ca_path.clone(),
            reason: "no certificate".into(),
        })?;
    let (_, ca_cert) =
        x509_parser::parse_x509_certificate(ca_der.as_ref()).map_err(|e| TlsError::ParsePem {
            path: ca_path.clone(),
            reason: e.to_string(),
        })?;
    if ca_cert.public_key().subject_public_key.data.as_ref() != ca_key.public_key_raw() {
        return Err(TlsError::ParsePem {
            path: key_path,
            reason: format!("this key is not the key of {}", ca_path.display()),
        });
    }
    let ca_name = ca_cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| TlsError::ParsePem {
            path: ca_path.clone(),
            reason: "the CA certificate has no common name".into(),
        })?
        .to_string();
    // The issuer as `generate` made it (same parameters, name and key), so new certificates
    // chain to the CA every node already trusts.
    let issuer = Issuer::new(ca_params(&ca_name), ca_key);
    let mut written = Vec::new();
    for id in nodes {
        let stem = format!("{NODE_PREFIX}{id}");
        write_leaf(dir, &stem, &issuer)?;
        written.push(dir.join(format!("{stem}.pem")));
    }
    for agent in agents {
        let stem = format!("{AGENT_PREFIX}{agent}");
        write_leaf(dir, &stem, &issuer)?;
        written.push(dir.join(format!("{stem}.pem")));
    }
    Ok(written)
}

/// The node id a certificate names: its one DNS name of the form `node-<id>.consentry`.
///
/// Other DNS names are ignored; an id with a sign or leading zeros is not a node name.
///
/// # Errors
/// [`TlsError::ParseCert`] on DER that is not a certificate; [`TlsError::NoNodeName`] when
/// no node name is present (an agent certificate, say); [`TlsError::ManyNodeNames`] when
/// more than one is.
pub fn node_id_from_cert(der: &[u8]) -> Result<NodeId, TlsError> {
    let names = dns_names(der)?;
    let ids: Vec<NodeId> = names.iter().filter_map(|n| parse_node_name(n)).collect();
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => Err(TlsError::NoNodeName { names }),
        _ => Err(TlsError::ManyNodeNames { names }),
    }
}

/// The agent name in a certificate: its one `agent-<name>.consentry` DNS name.
///
/// # Errors
/// [`TlsError::ParseCert`] on DER that is not a certificate, or when the certificate names
/// no agent or more than one.
pub fn agent_name_from_cert(der: &[u8]) -> Result<String, TlsError> {
    let names = dns_names(der)?;
    let agents: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_prefix(AGENT_PREFIX)?.strip_suffix(NAME_SUFFIX))
        .filter(|a| validate_agent_name(a).is_ok())
        .collect();
    match agents.as_slice() {
        [name] => Ok((*name).to_string()),
        _ => Err(TlsError::ParseCert {
            reason: format!(
                "an agent certificate names exactly one agent-<name>{NAME_SUFFIX}; this one                  has {names:?}"
            ),
        }),
    }
}

/// The server name a node's certificate must carry: `node-<id>.consentry`.
pub fn node_server_name(id: NodeId) -> String {
    format!("{NODE_PREFIX}{id}{NAME_SUFFIX}")
}

/// Every DNS subject-alternative name of a certificate.
///
/// # Errors
/// [`TlsError::ParseCert`] on DER that is not a certificate or has a malformed SAN extension.
pub fn dns_names(der: &[u8]) -> Result<Vec<String>, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::ParseCert {
        reason: e.to_string(),
    })?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::ParseCert {
            reason: format!("subject alternative names: {e}"),
        })?;
    let Some(san) = san else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_string()),
            _ => None,
        })
        .collect())
}

fn parse_node_name(name: &str) -> Option<NodeId> {
    let digits = name.strip_prefix(NODE_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: NodeId = digits.parse().ok()?;
    // Only the canonical spelling names a node: `node-01` must not pass for node 1.
    (id.to_string() == digits).then_some(id)
}

fn validate_names(nodes: &[NodeId], agents: &[String]) -> Result<(), TlsError> {
    if nodes.is_empty() {
        return Err(TlsError::NoNodes);
    }
    for (i, id) in nodes.iter().enumerate() {
        if nodes[..i].contains(id) {
            return Err(TlsError::DuplicateNode { id: *id });
        }
    }
    for (i, name) in agents.iter().enumerate() {
        validate_agent_name(name)?;
        if agents[..i].contains(name) {
            return Err(TlsError::DuplicateAgent { name: name.clone() });
        }
    }
    Ok(())
}

/// Checks an agent name: what its certificate can carry (`agent-<name>.consentry`).
///
/// # Errors
/// [`TlsError::AgentName`] saying what is wrong.
pub fn validate_agent_name(name: &str) -> Result<(), TlsError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > AGENT_NAME_BYTES_MAX {
        Some("it is too long")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("it contains a character other than a-z, 0-9 or '-'")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("it starts or ends with '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(TlsError::AgentName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

fn new_key(name: &str) -> Result<KeyPair, TlsError> {
    KeyPair::generate().map_err(|source| TlsError::Generate {
        name: name.to_string(),
        source,
    })
}

/// The cluster CA's parameters. `generate` self-signs them; `issue` rebuilds the issuer from
/// them, so its certificates name exactly the subject every node trusts.
fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Issues and writes `<stem>.pem` and `<stem>.key` for the identity `<stem>.consentry`.
fn write_leaf(dir: &Path, stem: &str, issuer: &Issuer<'_, KeyPair>) -> Result<(), TlsError> {
    let dns = format!("{stem}{NAME_SUFFIX}");
    let generate_error = |source| TlsError::Generate {
        name: dns.clone(),
        source,
    };
    let key = new_key(&dns)?;
    let mut params = CertificateParams::new(vec![dns.clone()]).map_err(generate_error)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, dns.as_str());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer).map_err(generate_error)?;
    write_public(&dir.join(format!("{stem}.pem")), cert.pem().as_bytes())?;
    write_secret(
        &dir.join(format!("{stem}.key")),
        key.serialize_pem().as_bytes(),
        false,
    )
}

/// Writes a certificate whole or not at all (a temporary file, then a rename), so a node
/// reloading on SIGHUP never reads half of one.
fn write_public(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let write_error = |source| TlsError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes).map_err(write_error)?;
    fs::rename(&tmp, path).map_err(write_error)
}

/// Writes a file only its owner can read. With `create_new`, an existing file is an error
/// rather than replaced (the CA key: two runs racing must not both win).
fn write_secret(path: &Path, bytes: &[u8], create_new: bool) -> Result<(), TlsError> {
    use std::io::Write;

    let write_error = |source| TlsError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(SECRET_FILE_MODE);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists && create_new {
            TlsError::CaKeyExists {
                path: path.to_path_buf(),
            }
        } else {
            write_error(source)
        }
    })?;
    // `mode` applies only when the file is created; tighten a file that already existed.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(SECRET_FILE_MODE))
            .map_err(write_error)?;
    }
    file.write_all(bytes).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;

    let read_error = |source| TlsError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(PEM_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > PEM_FILE_BYTES_MAX {
        return Err(TlsError::ParsePem {
            path: path.to_path_buf(),
            reason: format!("larger than {PEM_FILE_BYTES_MAX} bytes; is this a PEM file?"),
        });
    }
    Ok(bytes)
}

fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::ParsePem {
            path: path.to_path_buf(),
            reason: format!("malformed PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::ParsePem {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE block found".to_string(),
        });
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert).map_err(|e| TlsError::ParsePem {
            path: path.to_path_buf(),
            reason: format!("a CERTIFICATE block is not a valid certificate: {e}"),
        })?;
    }
    Ok(certs)
}

fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| TlsError::ParsePem {
            path: path.to_path_buf(),
            reason: format!("malformed PEM: {e}"),
        })?
        .ok_or_else(|| TlsError::ParsePem {
            path: path.to_path_buf(),
            reason: "no PRIVATE KEY block found".to_string(),
        })
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Loads the material `generate` wrote for `stem` (`node-1`, `agent-web1`).
    pub(crate) fn material(dir: &Path, stem: &str) -> TlsMaterial {
        TlsMaterial::load(
            &dir.join(CA_CERT_FILE),
            &dir.join(format!("{stem}.pem")),
            &dir.join(format!("{stem}.key")),
        )
        .unwrap()
    }

    fn leaf_der(dir: &Path, stem: &str) -> Vec<u8> {
        let pem = fs::read(dir.join(format!("{stem}.pem"))).unwrap();
        parse_certs(Path::new(stem), &pem).unwrap()[0].to_vec()
    }

    #[test]
    fn tls_generate_writes_every_file_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &[1, 2, 3], &["web1".to_string()]).unwrap();
        for file in [
            "ca.pem",
            "ca.key",
            "node-1.pem",
            "node-1.key",
            "node-2.pem",
            "node-3.key",
            "agent-web1.pem",
            "agent-web1.key",
            "api.token",
        ] {
            assert!(dir.path().join(file).is_file(), "{file} missing");
        }
        #[cfg(unix)]
        for file in ["ca.key", "node-1.key", "agent-web1.key", "api.token"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let token = fs::read_to_string(dir.path().join("api.token")).unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));

        assert_eq!(
            node_id_from_cert(&leaf_der(dir.path(), "node-2")).unwrap(),
            2
        );
        assert_eq!(material(dir.path(), "node-3").node_id().unwrap(), 3);
        assert!(matches!(
            node_id_from_cert(&leaf_der(dir.path(), "agent-web1")),
            Err(TlsError::NoNodeName { .. })
        ));
        assert_eq!(
            agent_name_from_cert(&leaf_der(dir.path(), "agent-web1")).unwrap(),
            "web1"
        );
        assert!(agent_name_from_cert(&leaf_der(dir.path(), "node-2")).is_err());
        assert_eq!(
            material(dir.path(), "agent-web1").agent_name().unwrap(),
            "web1"
        );
        material(dir.path(), "agent-web1")
            .agent_client_config()
            .unwrap();
        // Both configs build from every identity (agents included).
        material(dir.path(), "agent-web1").server_config().unwrap();
        material(dir.path(), "node-1").client_config().unwrap();
    }

    /// Verifies `stem`'s certificate as a server certificate for its own name, against the
    /// CA in `dir`, as a peer's handshake does.
    fn chains_to_ca(dir: &Path, stem: &str) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let ca = fs::read(dir.join(CA_CERT_FILE)).unwrap();
        roots.add(parse_certs(dir, &ca).unwrap().remove(0)).unwrap();
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let leaf = CertificateDer::from(leaf_der(dir, stem));
        let name = rustls::pki_types::ServerName::try_from(format!("{stem}{NAME_SUFFIX}")).unwrap();
        use rustls::client::danger::ServerCertVerifier as _;
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                    1_800_000_000,
                )),
            )
            .map(|_| ())
    }

    #[test]
    fn tls_issue_adds_and_rotates_certificates_of_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &[1, 2], &[]).unwrap();
        let before = leaf_der(dir.path(), "node-2");
        let written = issue(dir.path(), &[2, 4], &["web1".to_string()]).unwrap();
        assert_eq!(written.len(), 3);
        assert_ne!(leaf_der(dir.path(), "node-2"), before, "node 2 was rotated");
        for stem in ["node-1", "node-2", "node-4", "agent-web1"] {
            chains_to_ca(dir.path(), stem).unwrap_or_else(|e| panic!("{stem}: {e}"));
        }
        assert_eq!(material(dir.path(), "node-4").node_id().unwrap(), 4);
        assert_eq!(
            material(dir.path(), "node-4").ca_fingerprint(),
            material(dir.path(), "node-1").ca_fingerprint()
        );

        // Another CA's key cannot issue for this CA.
        let other = tempfile::tempdir().unwrap();
        generate(other.path(), &[1], &[]).unwrap();
        fs::copy(other.path().join(CA_KEY_FILE), dir.path().join(CA_KEY_FILE)).unwrap();
        let err = issue(dir.path(), &[5], &[]).unwrap_err();
        assert!(err.to_string().contains("not the key of"), "{err}");
        assert!(!dir.path().join("node-5.pem").exists());
        assert!(matches!(
            issue(dir.path(), &[], &[]),
            Err(TlsError::NoNodes)
        ));
        material(dir.path(), "node-4").verify_own_chain().unwrap();
        let foreign = TlsMaterial::load(
            &dir.path().join(CA_CERT_FILE),
            &other.path().join("node-1.pem"),
            &other.path().join("node-1.key"),
        )
        .unwrap();
        assert!(
            foreign.verify_own_chain().is_err(),
            "a leaf of another CA passed"
        );
    }

    #[test]
    fn tls_generate_refuses_an_existing_ca_key() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &[1], &[]).unwrap();
        let before = fs::read(dir.path().join("ca.key")).unwrap();
        let err = generate(dir.path(), &[1], &[]).unwrap_err();
        assert!(matches!(err, TlsError::CaKeyExists { .. }), "{err}");
        assert!(err.to_string().contains("ca.key"), "{err}");
        assert_eq!(fs::read(dir.path().join("ca.key")).unwrap(), before);
    }

    #[test]
    fn tls_generate_rejects_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "../etc", "Web1", "-web", "a.b", &"a".repeat(58)] {
            let err = generate(dir.path(), &[1], &[bad.to_string()]).unwrap_err();
            assert!(matches!(err, TlsError::AgentName { .. }), "{bad:?}: {err}");
        }
        assert!(matches!(
            generate(dir.path(), &[1, 1], &[]),
            Err(TlsError::DuplicateNode { id: 1 })
        ));
        assert!(matches!(
            generate(dir.path(), &[], &[]),
            Err(TlsError::NoNodes)
        ));
        assert!(!dir.path().join("ca.key").exists());
    }

    #[test]
    fn tls_node_names_parse_only_canonically() {
        assert_eq!(parse_node_name("node-7.consentry"), Some(7));
        assert_eq!(parse_node_name("node-0.consentry"), Some(0));
        for bad in [
            "node-07.consentry",
            "node-+7.consentry",
            "node-.consentry",
            "node-7.consentry.evil",
            "node-7",
            "agent-7.consentry",
            "node-99999999999999999999.consentry",
        ] {
            assert_eq!(parse_node_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn tls_node_id_from_cert_wants_exactly_one_node_name() {
        let key = KeyPair::generate().unwrap();
        let two = CertificateParams::new(vec![
            "node-1.consentry".to_string(),
            "node-2.consentry".to_string(),
        ])
        .unwrap()
        .self_signed(&key)
        .unwrap();
        assert!(matches!(
            node_id_from_cert(two.der()),
            Err(TlsError::ManyNodeNames { .. })
        ));
        let extra = CertificateParams::new(vec![
            "node-4.consentry".to_string(),
            "example.org".to_string(),
        ])
        .unwrap()
        .self_signed(&key)
        .unwrap();
        assert_eq!(node_id_from_cert(extra.der()).unwrap(), 4);
        assert!(matches!(
            node_id_from_cert(b"not a certificate"),
            Err(TlsError::ParseCert { .. })
        ));
    }

    #[test]
    fn tls_load_names_the_failing_file() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &[1, 2], &[]).unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = dir.path().join("node-1.pem");
        let key = dir.path().join("node-1.key");
        let missing = dir.path().join("nope.pem");

        let err = TlsMaterial::load(&ca, &missing, &key).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
        // A certificate file given where the key belongs holds no private key.
        let err = TlsMaterial::load(&ca, &cert, &cert).unwrap_err();
        assert!(matches!(err, TlsError::ParsePem { .. }), "{err}");
        assert!(err.to_string().contains("node-1.pem"), "{err}");
        // A key file given where the CA belongs holds no certificate.
        let err = TlsMaterial::load(&key, &cert, &key).unwrap_err();
        assert!(err.to_string().contains("node-1.key"), "{err}");
        // A key that belongs to another certificate.
        let other_key = dir.path().join("node-2.key");
        let err = TlsMaterial::load(&ca, &cert, &other_key).unwrap_err();
        assert!(matches!(err, TlsError::Config { .. }), "{err}");
        assert!(err.to_string().contains("node-2.key"), "{err}");
    }
}
