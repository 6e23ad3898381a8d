//! Signed provenance: the agent's public key, the detached signature over a manifest's exact
//! bytes, the facts every party reads out of a manifest (which job it is about, which files
//! with which SHA-256), and the search answers.
//!
//! # The signature scheme
//!
//! A manifest is an RO-Crate 1.1 metadata document (`ro-crate-metadata.json`, JSON-LD). Its
//! *canonical bytes are the bytes stored*: the agent serialises the document once, signs
//! those bytes with Ed25519 (RFC 8032, no pre-hash, no context) and uploads both; the server
//! keeps and serves the same bytes; a verifier checks the signature over the bytes it
//! received, then parses them. Nothing is re-serialised on the way, so no JSON
//! canonicalisation is needed. Keys are written `ed25519:<base64 of the 32 key bytes>`,
//! signatures as base64 of the 64 signature bytes.
//!
//! This module has no I/O: the agent signs (it holds the private key), the server and the
//! CLI verify with [`verify_manifest`] and read with [`ManifestFacts::parse`].

use crate::dto::is_valid_result_name;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The manifest's file name in a crate.
pub const MANIFEST_FILE: &str = "ro-crate-metadata.json";
/// The detached signature's file name in a crate (a [`SignatureFile`] as JSON).
pub const SIGNATURE_FILE: &str = "ro-crate-metadata.json.sig";
/// The header carrying the base64 signature of a manifest (upload and download).
pub const SIGNATURE_HEADER: &str = "x-provenance-signature";
/// The header carrying the key (`ed25519:…`) the agent says it signed with.
pub const KEY_HEADER: &str = "x-provenance-key";
/// The largest manifest anyone accepts.
pub const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;
/// Where result files are in a crate: `results/<name>`.
pub const RESULTS_PREFIX: &str = "results/";
/// The `@id` prefix of a code bundle entity: `#code-<sha256>`.
pub const CODE_PREFIX: &str = "#code-";
/// The `@id` of the job's own `CreateAction`: `urn:uuid:<job id>`.
pub fn job_action_id(job_id: &str) -> String {
    format!("urn:uuid:{job_id}")
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a key, a signature or a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenanceError(pub String);

impl std::fmt::Display for ProvenanceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProvenanceError {}

fn err(m: impl Into<String>) -> ProvenanceError {
    ProvenanceError(m.into())
}

/// An agent's Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentKey(pub [u8; 32]);

impl AgentKey {
    /// Parses `ed25519:<base64>` (surrounding whitespace ignored).
    pub fn parse(s: &str) -> Result<AgentKey, ProvenanceError> {
        let b64 = s
            .trim()
            .strip_prefix("ed25519:")
            .ok_or_else(|| err("an agent key is written ed25519:<base64 of 32 bytes>"))?;
        let bytes = B64
            .decode(b64)
            .map_err(|e| err(format!("the agent key is not base64: {e}")))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| err("an Ed25519 public key has 32 bytes"))?;
        ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map_err(|_| err("not a valid Ed25519 public key"))?;
        Ok(AgentKey(arr))
    }
}

impl std::fmt::Display for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ed25519:{}", B64.encode(self.0))
    }
}

/// Base64 of a signature (what [`SIGNATURE_HEADER`] and [`SignatureFile`] carry).
pub fn encode_signature(sig: &[u8; 64]) -> String {
    B64.encode(sig)
}

/// Checks that `signature` (base64) is `key`'s Ed25519 signature over exactly `manifest`.
pub fn verify_manifest(
    key: &AgentKey,
    manifest: &[u8],
    signature: &str,
) -> Result<(), ProvenanceError> {
    let raw = B64
        .decode(signature.trim())
        .map_err(|e| err(format!("the signature is not base64: {e}")))?;
    let raw: [u8; 64] = raw
        .try_into()
        .map_err(|_| err("an Ed25519 signature has 64 bytes"))?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.0)
        .map_err(|_| err("not a valid Ed25519 public key"))?;
    vk.verify_strict(manifest, &ed25519_dalek::Signature::from_bytes(&raw))
        .map_err(|_| err("the signature does not match the manifest and this key"))
}

/// The detached signature as kept next to the manifest in a crate (`ro-crate-metadata.json.sig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignatureFile {
    /// Always `ed25519`.
    pub algorithm: String,
    /// The key the agent says it signed with (`ed25519:…`); trust the key you got from the
    /// agent's operator (`hpcsera agent --show-key`), not this one.
    pub public_key: String,
    /// Base64 of the 64 signature bytes over the exact bytes of `ro-crate-metadata.json`.
    pub signature: String,
}

/// What a file named in a manifest is to the job.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DigestRole {
    /// A result file the job made.
    Result,
    /// A code bundle the job ran.
    Code,
    /// Another input the job read.
    Input,
}

impl DigestRole {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestRole::Result => "result",
            DigestRole::Code => "code",
            DigestRole::Input => "input",
        }
    }
}

impl std::str::FromStr for DigestRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "result" => Ok(DigestRole::Result),
            "code" => Ok(DigestRole::Code),
            "input" => Ok(DigestRole::Input),
            other => Err(format!(
                "unknown role {other:?}; roles are result, code, input"
            )),
        }
    }
}

/// One file a manifest names, with its digest.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvenanceDigest {
    pub role: DigestRole,
    /// The file's `@id` in the crate (`results/<name>` for a result, `#code-<sha256>` for a
    /// code bundle).
    pub name: String,
    /// 64 lower-case hex digits.
    pub sha256: String,
    pub size: Option<u64>,
}

/// What every reader takes out of a manifest: which job it is about and which files (with
/// which digests) it names as the job's results, code and other inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFacts {
    /// The job the manifest is about (its root's `identifier`).
    pub job_id: String,
    /// The job's end as the agent saw it (`endTime` of the job's action), RFC 3339.
    pub end_time: Option<String>,
    pub digests: Vec<ProvenanceDigest>,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The `@id`s a property refers to (one `{"@id"}` or an array of them).
fn refs(entity: &Map<String, Value>, prop: &str) -> Vec<String> {
    let one = |v: &Value| v.get("@id").and_then(Value::as_str).map(str::to_string);
    match entity.get(prop) {
        Some(Value::Array(a)) => a.iter().filter_map(one).collect(),
        Some(v) => one(v).into_iter().collect(),
        None => Vec::new(),
    }
}

fn has_type(entity: &Map<String, Value>, t: &str) -> bool {
    match entity.get("@type") {
        Some(Value::String(s)) => s == t,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(t)),
        _ => false,
    }
}

/// The `File`s the job's action names as `result` and `object`, with their roles.
fn named_files(
    action: &Map<String, Value>,
    by_id: &std::collections::HashMap<String, &Map<String, Value>>,
) -> Result<Vec<ProvenanceDigest>, ProvenanceError> {
    let mut digests = Vec::new();
    let named = refs(action, "result")
        .into_iter()
        .map(|id| (id, true))
        .chain(refs(action, "object").into_iter().map(|id| (id, false)));
    for (id, is_result) in named {
        let Some(e) = by_id.get(&id) else {
            return Err(err(format!("{id:?} is named by the job but not described")));
        };
        if !has_type(e, "File") {
            continue;
        }
        let sha = e.get("sha256").and_then(Value::as_str).unwrap_or_default();
        if !is_sha256(sha) {
            return Err(err(format!(
                "{id:?} has no sha256 of 64 lower-case hex digits"
            )));
        }
        let role = if is_result {
            let ok = id
                .strip_prefix(RESULTS_PREFIX)
                .is_some_and(is_valid_result_name);
            if !ok {
                return Err(err(format!("result file {id:?} is not results/<name>")));
            }
            DigestRole::Result
        } else if id.starts_with(CODE_PREFIX) {
            DigestRole::Code
        } else {
            DigestRole::Input
        };
        let size = e
            .get("contentSize")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok());
        digests.push(ProvenanceDigest {
            role,
            name: id,
            sha256: sha.to_string(),
            size,
        });
    }
    Ok(digests)
}

impl ManifestFacts {
    /// Reads a manifest: the root data entity `./` names the job (`identifier`), the job's
    /// action `urn:uuid:<job id>` its results (`result`) and inputs (`object`); every named
    /// `File` must carry a `sha256` of 64 lower-case hex digits, and result files must be
    /// `results/<valid name>`.
    pub fn parse(manifest: &[u8]) -> Result<ManifestFacts, ProvenanceError> {
        if manifest.len() > MAX_MANIFEST_BYTES {
            return Err(err(format!(
                "the manifest is larger than {MAX_MANIFEST_BYTES} bytes"
            )));
        }
        let doc: Value = serde_json::from_slice(manifest)
            .map_err(|e| err(format!("the manifest is not JSON: {e}")))?;
        let graph = doc
            .get("@graph")
            .and_then(Value::as_array)
            .ok_or_else(|| err("the manifest has no @graph array"))?;
        let mut by_id = std::collections::HashMap::new();
        for e in graph {
            if let Some(obj) = e.as_object() {
                if let Some(id) = obj.get("@id").and_then(Value::as_str) {
                    by_id.insert(id.to_string(), obj);
                }
            }
        }
        let root = by_id
            .get("./")
            .ok_or_else(|| err("the manifest has no root data entity \"./\""))?;
        let job_id = root
            .get("identifier")
            .and_then(Value::as_str)
            .ok_or_else(|| err("the root data entity has no identifier (the job id)"))?
            .to_string();
        let action = by_id
            .get(&job_action_id(&job_id))
            .filter(|a| has_type(a, "CreateAction"))
            .ok_or_else(|| err("the manifest has no CreateAction urn:uuid:<job id>"))?;
        let end_time = action
            .get("endTime")
            .and_then(Value::as_str)
            .map(str::to_string);
        let digests = named_files(action, &by_id)?;
        Ok(ManifestFacts {
            job_id,
            end_time,
            digests,
        })
    }

    /// The result files named, as (name below `results/`, sha256, size).
    pub fn results(&self) -> impl Iterator<Item = (&str, &str, Option<u64>)> {
        self.digests.iter().filter_map(|d| {
            let name = d.name.strip_prefix(RESULTS_PREFIX)?;
            (d.role == DigestRole::Result).then_some((name, d.sha256.as_str(), d.size))
        })
    }
}

/// A job whose signed provenance names a digest searched for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvenanceHit {
    pub job_id: String,
    pub site: String,
    pub job_type: String,
    /// The job's status on the server.
    pub status: crate::JobStatus,
    /// When the job ended (from the agent's manifest).
    pub ended_at: String,
    /// The key the agent says it signed with.
    pub agent_key: String,
    /// The files of this job with the digests searched for (all its files when no digest was
    /// given), at most 100.
    pub matches: Vec<ProvenanceDigest>,
}

/// One page of `GET /provenance`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvenanceSearch {
    pub jobs: Vec<ProvenanceHit>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_pair() -> (ed25519_dalek::SigningKey, AgentKey) {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let pk = AgentKey(sk.verifying_key().to_bytes());
        (sk, pk)
    }

    #[test]
    fn keys_round_trip_and_bad_keys_are_refused() {
        let (_, pk) = key_pair();
        assert_eq!(AgentKey::parse(&pk.to_string()).unwrap(), pk);
        for bad in ["", "ed25519:", "ed25519:AAAA", "rsa:abc", "ed25519:!!!"] {
            assert!(AgentKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_changed_byte_or_another_key_fails() {
        use ed25519_dalek::Signer;
        let (sk, pk) = key_pair();
        let msg = br#"{"a":1}"#;
        let sig = encode_signature(&sk.sign(msg).to_bytes());
        verify_manifest(&pk, msg, &sig).unwrap();
        let mut changed = msg.to_vec();
        changed[5] = b'2';
        assert!(verify_manifest(&pk, &changed, &sig).is_err());
        let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let resigned = encode_signature(&other.sign(msg).to_bytes());
        assert!(verify_manifest(&pk, msg, &resigned).is_err());
        assert!(verify_manifest(&pk, msg, "not base64!").is_err());
    }

    #[test]
    fn facts_name_the_job_and_its_files() {
        let sha = "a".repeat(64);
        let doc = serde_json::json!({"@graph": [
            {"@id": "./", "@type": "Dataset", "identifier": "J"},
            {"@id": "urn:uuid:J", "@type": "CreateAction", "endTime": "t",
             "result": [{"@id": "results/x.txt"}, {"@id": "#exit"}],
             "object": {"@id": format!("#code-{sha}")}},
            {"@id": "results/x.txt", "@type": "File", "sha256": sha, "contentSize": "3"},
            {"@id": "#exit", "@type": "PropertyValue", "value": 0},
            {"@id": format!("#code-{sha}"), "@type": "File", "sha256": sha},
        ]});
        let f = ManifestFacts::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(f.job_id, "J");
        assert_eq!(f.digests.len(), 2);
        assert_eq!(
            f.results().collect::<Vec<_>>(),
            vec![("x.txt", sha.as_str(), Some(3))]
        );
        assert_eq!(f.digests[1].role, DigestRole::Code);
        let bad = doc.to_string().replace(&sha, "ABC");
        assert!(ManifestFacts::parse(bad.as_bytes()).is_err());
        let escape = doc.to_string().replace("results/x.txt", "results/../x");
        assert!(ManifestFacts::parse(escape.as_bytes()).is_err());
    }
}
