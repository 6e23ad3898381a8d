//! Signed provenance: the agent uploads a job's manifest with its signature; clients read
//! it (with the signature and key the server kept), download the crate as a ZIP, and search
//! which jobs made or used a file.
//!
//! The SDK only moves bytes: verifying a manifest is the caller's (with
//! `hpcsera_api_types::provenance::verify_manifest` and a key it trusts).

use crate::http::{decode, read_body, seg, Body};
use crate::*;
use api::provenance::{ProvenanceSearch, KEY_HEADER, MAX_MANIFEST_BYTES, SIGNATURE_HEADER};
use reqwest::Method;

/// A manifest as the server keeps it.
#[derive(Debug, Clone)]
pub struct SignedManifest {
    /// The exact bytes the agent signed.
    pub manifest: Vec<u8>,
    /// Base64 Ed25519 signature, as the server keeps it.
    pub signature: String,
    /// The key the agent says it signed with (`ed25519:…`).
    pub agent_key: String,
}

/// What `GET /provenance` asks for (all optional; they narrow the answer).
#[derive(Debug, Clone, Default)]
pub struct ProvenanceQuery {
    pub sha256: Option<String>,
    pub code_sha256: Option<String>,
    pub job_type: Option<String>,
    pub site: Option<String>,
    /// RFC 3339.
    pub ended_after: Option<String>,
    /// RFC 3339.
    pub ended_before: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl Client {
    /// The agent stores the signed manifest of a job it holds (before reporting its end).
    pub async fn put_provenance(
        &self,
        id: &str,
        manifest: &[u8],
        signature: &str,
        agent_key: &str,
    ) -> Result<()> {
        self.send(
            Method::PUT,
            &format!("/job/{}/provenance", seg(id)),
            Body::Bytes(manifest),
            &[
                (SIGNATURE_HEADER, signature.to_string()),
                (KEY_HEADER, agent_key.to_string()),
            ],
        )
        .await?;
        Ok(())
    }

    /// A job's manifest with the signature and key the server kept.
    pub async fn provenance(&self, id: &str) -> Result<SignedManifest> {
        let resp = self
            .send(
                Method::GET,
                &format!("/job/{}/provenance", seg(id)),
                Body::None,
                &[],
            )
            .await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| ClientError::Decode(format!("no {name} header")))
        };
        let signature = header(SIGNATURE_HEADER)?;
        let agent_key = header(KEY_HEADER)?;
        let manifest = read_body(resp, MAX_MANIFEST_BYTES as u64).await?;
        Ok(SignedManifest {
            manifest,
            signature,
            agent_key,
        })
    }

    /// Streams a job's crate (ZIP) into `dest`, refusing more than `max_bytes`; returns its
    /// size and SHA-256.
    pub async fn download_provenance_zip(
        &self,
        id: &str,
        dest: &std::path::Path,
        max_bytes: u64,
    ) -> Result<(u64, String)> {
        let path = format!("/job/{}/provenance.zip", seg(id));
        self.download(&path, dest, max_bytes, "the crate").await
    }

    /// One page of the project's jobs whose provenance matches `q`.
    pub async fn search_provenance(&self, q: &ProvenanceQuery) -> Result<ProvenanceSearch> {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (k, v) in [
            ("sha256", &q.sha256),
            ("codeSha256", &q.code_sha256),
            ("jobType", &q.job_type),
            ("site", &q.site),
            ("endedAfter", &q.ended_after),
            ("endedBefore", &q.ended_before),
            ("cursor", &q.cursor),
        ] {
            if let Some(v) = v {
                pairs.push((k, v.clone()));
            }
        }
        if let Some(l) = q.limit {
            pairs.push(("limit", l.to_string()));
        }
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let resp = self
            .send(
                Method::GET,
                &format!("/provenance?{query}"),
                Body::None,
                &[],
            )
            .await?;
        decode(resp, self.max_body_bytes).await
    }
}
