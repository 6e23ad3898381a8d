//! What the agent does: report digests, publish job types, poll, report on the jobs it holds
//! (operations, cleanup, output, result files).

use crate::http::{decode, path_segs, seg, to_value, Body};
use crate::*;
use reqwest::Method;

impl Client {
    /// Reports the digest the agent computed of a pending bundle.
    pub async fn report_hpc_digest(&self, id: &str, sha256: &str) -> Result<CodeBundle> {
        let body = to_value(&HpcDigest {
            sha256: sha256.to_string(),
        })?;
        self.json(
            Method::POST,
            &format!("/code/{}/hpcDigest", seg(id)),
            Body::Json(&body),
        )
        .await
    }

    // --- the agent's side ---

    pub async fn publish_job_types(&self, site: &str, body: &PublishJobTypes) -> Result<()> {
        let body = to_value(body)?;
        self.send(
            Method::PUT,
            &format!("/sites/{}/jobTypes", seg(site)),
            Body::Json(&body),
            &[],
        )
        .await?;
        Ok(())
    }

    pub async fn agent_poll(&self, poll: &AgentPoll) -> Result<AgentPollReply> {
        let body = to_value(poll)?;
        self.json(Method::POST, "/agent/poll", Body::Json(&body))
            .await
    }

    pub async fn operation_done(&self, id: &str, done: &OperationDone) -> Result<Job> {
        let body = to_value(done)?;
        self.json(
            Method::POST,
            &format!("/agent/jobs/{}/operationDone", seg(id)),
            Body::Json(&body),
        )
        .await
    }

    /// Records what the agent did about a job the server made `lost` (an `agent_cleanup`
    /// event); only the agent token that last held the job may.
    pub async fn agent_cleanup(&self, id: &str, message: &str) -> Result<Job> {
        let body = to_value(&api::AgentCleanup {
            message: message.to_string(),
        })?;
        self.json(
            Method::POST,
            &format!("/agent/jobs/{}/cleanup", seg(id)),
            Body::Json(&body),
        )
        .await
    }

    /// Appends output at `offset`; returns the stream's length on the server.
    pub async fn append_output(
        &self,
        id: &str,
        stream: OutputStream,
        offset: u64,
        data: &[u8],
    ) -> Result<u64> {
        #[derive(serde::Deserialize)]
        struct Len {
            length: u64,
        }
        let path = format!(
            "/job/{}/output/{}?offset={offset}",
            seg(id),
            stream.as_str()
        );
        let resp = self
            .send(Method::POST, &path, Body::Bytes(data), &[])
            .await?;
        Ok(decode::<Len>(resp, self.max_body_bytes).await?.length)
    }

    pub async fn put_result(&self, id: &str, name: &str, data: &[u8]) -> Result<ResultFile> {
        let path = format!("/job/{}/results/{}", seg(id), path_segs(name));
        let resp = self
            .send(Method::PUT, &path, Body::Bytes(data), &[])
            .await?;
        decode(resp, self.max_body_bytes).await
    }
}
