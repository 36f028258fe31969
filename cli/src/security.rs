//! The security options shared by `listen` and `send`: the node's key, who it trusts, or no
//! TLS at all.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use networkio::{Identity, KnownPeersLimits, NodeBuilder, TrustPolicy};

/// The one-line warning `listen` prints when anyone may connect.
pub(crate) const OPEN_WARNING: &str =
    "warning: open trust policy: any key may connect; use --trust or --known-peers";
/// The one-line warning `listen` prints without TLS.
pub(crate) const PLAINTEXT_WARNING: &str = "warning: --insecure-plaintext: no encryption and no \
     authentication; any host that can reach this node may claim any name";

/// How the node protects its connections.
///
/// By default every connection runs TLS 1.3 and both sides prove they hold their Ed25519 key.
/// Without --trust or --known-peers any key may connect (still encrypted, and a session stays
/// bound to the key that created it).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Security")]
pub(crate) struct SecurityArgs {
    /// This node's private key, as written by `networkio keygen --out FILE` (mode 0600; a key
    /// file others can read is used with a warning). Default: a new random key on every run,
    /// so peers cannot recognise this node after a restart (a --trust or --known-peers peer
    /// would refuse it): long-lived nodes should use --key.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,

    /// Allowlist: only the peers listed in FILE, one `NAME KEY` line each (`NAME
    /// ed25519:...`, `#` starts a comment), may connect or be connected to, each under its
    /// name and with its key.
    #[arg(long, value_name = "FILE", conflicts_with = "known_peers")]
    trust: Option<PathBuf>,

    /// Trust on first use (as SSH does): the first key seen for a peer name is recorded in
    /// FILE (same `NAME KEY` format; created at startup if missing, an error if it cannot be
    /// created or written); from then on only that key may use that name.
    #[arg(long, value_name = "FILE")]
    known_peers: Option<PathBuf>,

    /// With --known-peers: most names FILE may pin; a new name beyond is refused
    /// (TRUST_STORE_FULL). Default 16384.
    #[arg(long, value_name = "N", requires = "known_peers", value_parser = clap::value_parser!(u32).range(1..))]
    known_peers_max: Option<u32>,

    /// With --known-peers: most names one key may pin, so one key cycling through names
    /// cannot fill FILE. Default 16.
    #[arg(long, value_name = "N", requires = "known_peers", value_parser = clap::value_parser!(u32).range(1..))]
    known_peers_per_key: Option<u32>,

    /// INSECURE: no TLS, so no encryption and no authentication; anyone who can reach the
    /// node may claim any name and read the messages. For trusted networks only. Both sides
    /// must use it (a plaintext node and a TLS node cannot talk).
    #[arg(long, conflicts_with_all = ["key", "trust", "known_peers"])]
    insecure_plaintext: bool,
}

impl SecurityArgs {
    /// Whether connections run without TLS.
    pub(crate) fn plaintext(&self) -> bool {
        self.insecure_plaintext
    }

    /// Whether any key may connect (TLS without --trust or --known-peers).
    pub(crate) fn open(&self) -> bool {
        !self.insecure_plaintext && self.trust.is_none() && self.known_peers.is_none()
    }

    /// Loads the key and trust files and configures `builder` with them.
    pub(crate) fn apply(&self, builder: NodeBuilder) -> anyhow::Result<NodeBuilder> {
        if self.insecure_plaintext {
            return Ok(builder.insecure_plaintext());
        }
        let mut builder = builder;
        if let Some(path) = &self.key {
            builder = builder.identity(load_identity(path)?);
        }
        if let Some(path) = &self.trust {
            let policy = TrustPolicy::allowlist_file(path).context("bad --trust file")?;
            builder = builder.trust(policy);
        }
        if let Some(path) = &self.known_peers {
            let mut limits = KnownPeersLimits::default();
            if let Some(max) = self.known_peers_max {
                limits.max_entries = max as usize;
            }
            if let Some(max) = self.known_peers_per_key {
                limits.max_names_per_key = max as usize;
            }
            let policy = TrustPolicy::known_peers_file_with(path, limits)
                .context("bad --known-peers file")?;
            builder = builder.trust(policy);
        }
        Ok(builder)
    }
}

/// Reads a private key file written by `networkio keygen`, warning on stderr (as ssh does) if
/// others may read it.
pub(crate) fn load_identity(path: &Path) -> anyhow::Result<Identity> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("could not read key file {}", path.display()))?;
    let identity = Identity::from_pem(&pem).with_context(|| {
        format!(
            "{} is not a networkio private key (make one with `networkio keygen --out FILE`)",
            path.display()
        )
    })?;
    if let Some(warning) = exposure_warning(path) {
        eprintln!("{warning}");
    }
    Ok(identity)
}

/// The warning for a key file that its group or others may access, if it is one. The key is
/// still used (ssh refuses it; a warning is enough to be noticed without breaking a
/// deployment), but whoever can read it can impersonate the node.
#[cfg(unix)]
fn exposure_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "warning: key file {path} is accessible by others than its owner (mode {mode:04o}); \
             whoever reads it can impersonate this node: chmod 600 {path}",
            path = path.display()
        )
    })
}

#[cfg(not(unix))]
fn exposure_warning(_path: &Path) -> Option<String> {
    None
}

/// Writes a new identity to `path` (owner-only permissions); refuses to overwrite.
pub(crate) fn write_identity(identity: &Identity, path: &Path) -> anyhow::Result<()> {
    match identity.write_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} already exists: refusing to overwrite a key file (remove it or choose another path)",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("could not write key file {}", path.display())),
    }
}
