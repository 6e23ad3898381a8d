//! `hpcsera admin user key add|list|remove`: people's SSH public keys, on the server host.
//!
//! The same store calls as the web UI's keys page. A key is read and checked with
//! `hpcsera_approval::parse_public_key` before it is stored (certificates and private keys are
//! refused); the name defaults to the key's comment.

use anyhow::Context;
use clap::Subcommand;
use hpcsera_store::{NewUserKey, Store};
use std::io::Read;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Register a public key for a user: the line of an OpenSSH `.pub` file, read from FILE
    /// (`-` for stdin).
    Add {
        user: String,
        file: PathBuf,
        /// What the key is (default: the key's comment).
        #[arg(long)]
        name: Option<String>,
    },
    /// A user's keys: id, fingerprint, algorithm, name, added.
    List { user: String },
    /// Remove one of a user's keys, by id or fingerprint (`SHA256:…`).
    Remove { user: String, key: String },
}

/// The id of an existing user.
async fn user_id(store: &Store, user: &str) -> anyhow::Result<i64> {
    Ok(store
        .user_by_name(user)
        .await?
        .with_context(|| format!("there is no user {user:?}"))?
        .id)
}

pub async fn run(store: &Store, cmd: KeyCmd) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::Add { user, file, name } => {
            let id = user_id(store, &user).await?;
            let mut text = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin()
                    .take(64 * 1024)
                    .read_to_string(&mut text)
                    .context("cannot read the key from stdin")?;
            } else {
                text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
            }
            let key = hpcsera_approval::parse_public_key(&text).map_err(anyhow::Error::msg)?;
            let name = name.unwrap_or_else(|| key.comment.clone());
            let name = if name.trim().is_empty() {
                key.algorithm.clone()
            } else {
                name.trim().chars().take(100).collect()
            };
            let k = store
                .add_user_key(&NewUserKey {
                    user_id: id,
                    name: &name,
                    public_key: &key.openssh,
                    fingerprint: &key.fingerprint,
                    algorithm: &key.algorithm,
                })
                .await?;
            println!("key {} ({}) added for {user}", k.fingerprint, k.name);
        }
        KeyCmd::List { user } => {
            let id = user_id(store, &user).await?;
            let keys = store.list_user_keys(id).await?;
            if crate::cli::json_output() {
                return crate::cli::print_json(&serde_json::json!({ "keys": keys }));
            }
            println!("id\tfingerprint\talgorithm\tname\tadded");
            for k in keys {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.id, k.fingerprint, k.algorithm, k.name, k.created_at
                );
            }
        }
        KeyCmd::Remove { user, key } => {
            let id = user_id(store, &user).await?;
            store
                .remove_user_key(id, &key)
                .await
                .with_context(|| format!("{user} has no key {key:?}"))?;
            println!("key {key} of {user} removed");
        }
    }
    Ok(())
}
