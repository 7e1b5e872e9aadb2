//! An S3-compatible bucket as the blob store (AWS, MinIO, R2, Ceph …), configured like every
//! AWS tool: `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
//! and the rest of `object_store`'s `AWS_*` settings. Requests use path-style addressing, which
//! every S3-compatible server understands.

use std::fmt;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

use super::BlobError;
use crate::secret::Secret;

/// The `AWS_*` variables of the environment, taken once at start-up into the configuration
/// (so a test can hand its own to a server in the same process). Values never print: some are
/// credentials.
#[derive(Clone, Default)]
pub struct AwsEnvironment(Vec<(String, Secret)>);

impl AwsEnvironment {
    pub fn from_env() -> Self {
        Self::from_pairs(std::env::vars())
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(
            pairs
                .into_iter()
                .filter(|(name, _)| name.starts_with("AWS_"))
                .map(|(name, value)| (name, Secret::new(value)))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.expose())
    }
}

impl fmt::Debug for AwsEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

pub(super) fn open(
    bucket: &str,
    prefix: &str,
    aws: &AwsEnvironment,
) -> Result<Arc<dyn ObjectStore>, BlobError> {
    // What `AmazonS3Builder::from_env` does, over the variables the configuration holds.
    let mut builder = AmazonS3Builder::new();
    for (name, value) in &aws.0 {
        if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(key, value.expose());
        }
    }
    // A plain-http endpoint (a bucket server on the same host or network) is what the
    // operator asked for by naming one.
    let plain_http = aws
        .get("AWS_ENDPOINT_URL")
        .or_else(|| aws.get("AWS_ENDPOINT"))
        .is_some_and(|url| url.starts_with("http://"));
    if plain_http {
        builder = builder.with_allow_http(true);
    }
    let store = builder
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| BlobError::Settings(e.to_string()))?;
    if prefix.is_empty() {
        Ok(Arc::new(store))
    } else {
        Ok(Arc::new(PrefixStore::new(store, prefix)))
    }
}
