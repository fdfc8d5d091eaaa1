//! How the edge authenticates to an upstream resource.

use http::HeaderMap;
use http::header::HeaderValue;

use crate::snapshot::UpstreamResource;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamAuthError {
    #[error(
        "resource '{0}' uses managed identity, and no managed-identity token is available on this edge"
    )]
    NoManagedIdentityToken(String),
    #[error("resource '{0}' has no usable API key; an admin must set one")]
    NoKey(String),
}

/// Puts the resource's credential on the upstream request.
pub fn authorize(
    resource: &UpstreamResource,
    headers: &mut HeaderMap,
) -> Result<(), UpstreamAuthError> {
    if resource.use_managed_identity && resource.api_key.is_none() {
        return Err(UpstreamAuthError::NoManagedIdentityToken(
            resource.friendly_name.clone(),
        ));
    }
    let key = resource
        .api_key
        .as_deref()
        .ok_or_else(|| UpstreamAuthError::NoKey(resource.friendly_name.clone()))?;
    let mut value = HeaderValue::from_str(key)
        .map_err(|_| UpstreamAuthError::NoKey(resource.friendly_name.clone()))?;
    value.set_sensitive(true);
    headers.insert("api-key", value);
    Ok(())
}
