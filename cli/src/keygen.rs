//! `networkio keygen`: make a node's private key, or show the public key of one.

use std::path::PathBuf;

use anyhow::Context;
use networkio::Identity;

use crate::security::{load_identity, write_identity};

/// Generate a node's private key, or show the public key of an existing one.
#[derive(Debug, clap::Args)]
#[command(long_about = "\
Generate a node's private key, or show the public key of an existing one.

`networkio keygen --out FILE` writes a new Ed25519 private key to FILE (readable only by its \
owner; an existing FILE is never overwritten) and prints its public key on stdout as one \
line, `ed25519:...`. Give that key to the peers that should trust this node: they put a line \
`NAME ed25519:...` in their --trust file, NAME being the --id this node runs with. With \
--id ID, the ready-made line `ID ed25519:...` is shown on stderr.

`networkio keygen --show FILE` prints the public key of the private key in FILE.

Use the key file with `listen --key FILE` or `send --key FILE`. Keep it private: whoever \
holds it can speak as this node to every peer that trusts its public key.")]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["out", "show"]))]
pub(crate) struct Args {
    /// Write a new private key to FILE (must not exist yet).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Print the public key of the existing private key in FILE.
    #[arg(long, value_name = "FILE")]
    show: Option<PathBuf>,

    /// The node name the key is for: with --out, the hint on stderr is a ready trust-file
    /// line `ID ed25519:...`.
    #[arg(long, value_name = "ID", conflicts_with = "show", value_parser = crate::args::node_name)]
    id: Option<String>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = args.show {
        println!("{}", load_identity(&path)?.public_key());
        return Ok(());
    }
    let Some(path) = args.out else {
        anyhow::bail!("give --out FILE or --show FILE");
    };
    let identity = Identity::generate().context("could not generate a key")?;
    write_identity(&identity, &path)?;
    let key = identity.public_key();
    println!("{key}");
    let name = args.id.as_deref().unwrap_or("NAME");
    eprintln!(
        "wrote private key to {}; give peers this line for their trust file: {name} {key}",
        path.display()
    );
    Ok(())
}
