//! How the edge authenticates to an upstream resource: `Authorization: Bearer <managed-identity
//! token>` for managed-identity resources (a token the control plane minted; the edge has no
//! credential of its own), else `api-key: <resource key>`.

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderValue};

use crate::snapshot::{CatalogSnapshot, UpstreamResource};

#[derive(Debug, thiserror::Error)]
pub enum UpstreamAuthError {
    #[error(
        "Resource '{0}' uses managed identity and no managed-identity token is available for it: the control plane has not minted one (see the resource's managed_identity status in the admin API) or it is about to expire"
    )]
    NoManagedIdentityToken(String),
    #[error("Resource '{0}' has no usable API key; an admin must set one")]
    NoKey(String),
}

/// Puts the resource's credential on the upstream request. A token is used only while it has more
/// than `margin_ms` left.
pub fn authorize(
    resource: &UpstreamResource,
    snapshot: &CatalogSnapshot,
    now_ms: i64,
    margin_ms: i64,
    headers: &mut HeaderMap,
) -> Result<(), UpstreamAuthError> {
    if resource.use_managed_identity {
        let token = snapshot
            .token_for(resource)
            .filter(|t| t.expires_on_ms - margin_ms > now_ms)
            .ok_or_else(|| {
                UpstreamAuthError::NoManagedIdentityToken(resource.friendly_name.clone())
            })?;
        headers.insert(AUTHORIZATION, token.authorization.clone());
        return Ok(());
    }
    let key = resource
        .api_key
        .as_deref()
        .ok_or_else(|| UpstreamAuthError::NoKey(resource.friendly_name.clone()))?;
    let mut value = HeaderValue::from_str(key)
        .map_err(|_| UpstreamAuthError::NoKey(resource.friendly_name.clone()))?;
    value.set_sensitive(true);
    headers.insert(super::headers::API_KEY, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use aiproxy_proto::v1 as pb;

    use super::*;

    fn snapshot(expires_on_ms: i64) -> (CatalogSnapshot, std::sync::Arc<UpstreamResource>) {
        let resource = |id: &str, mi: bool| pb::EdgeResource {
            info: Some(pb::ResourceInfo {
                id: id.into(),
                friendly_name: id.into(),
                deployment_name: "gpt".into(),
                model_type: "foundry-model".into(),
                endpoint_url: "https://x.openai.azure.com".into(),
                use_managed_identity: mi,
                active: true,
                ..Default::default()
            }),
            api_key: if mi {
                String::new()
            } else {
                "resource-key".into()
            },
            token_scope: if mi {
                "https://cognitiveservices.azure.com/.default".into()
            } else {
                String::new()
            },
        };
        let update = pb::SyncUpdate {
            full: true,
            key_hash_secret: vec![1; 32],
            resources: vec![resource("mi", true), resource("keyed", false)],
            events: vec![pb::EventInfo {
                id: "e".into(),
                resource_ids: vec!["mi".into(), "keyed".into()],
                ..Default::default()
            }],
            tokens_included: true,
            tokens: vec![pb::ManagedIdentityToken {
                identity_client_id: String::new(),
                scope: "https://cognitiveservices.azure.com/.default".into(),
                access_token: "eyJ.mi-token".into(),
                expires_on_ms,
            }],
            ..Default::default()
        };
        let snapshot = CatalogSnapshot::default().apply(update).unwrap();
        let mi = snapshot
            .pool("e", "foundry-model", "gpt")
            .unwrap()
            .iter()
            .find(|r| r.id == "mi")
            .unwrap()
            .clone();
        (snapshot, mi)
    }

    #[test]
    fn managed_identity_resources_get_the_bearer_token_and_no_key() {
        let (snapshot, mi) = snapshot(1_000_000);
        let mut headers = HeaderMap::new();
        authorize(&mi, &snapshot, 900_000, 60_000, &mut headers).unwrap();
        assert_eq!(headers[AUTHORIZATION], "Bearer eyJ.mi-token");
        assert!(headers[AUTHORIZATION].is_sensitive());
        assert!(headers.get("api-key").is_none());
        let keyed = snapshot
            .pool("e", "foundry-model", "gpt")
            .unwrap()
            .iter()
            .find(|r| r.id == "keyed")
            .unwrap()
            .clone();
        let mut headers = HeaderMap::new();
        authorize(&keyed, &snapshot, 900_000, 60_000, &mut headers).unwrap();
        assert_eq!(headers["api-key"], "resource-key");
        assert!(headers.get(AUTHORIZATION).is_none());
    }

    #[test]
    fn a_token_is_not_used_in_its_last_margin() {
        let (snapshot, mi) = snapshot(1_000_000);
        let mut headers = HeaderMap::new();
        let err = authorize(&mi, &snapshot, 940_001, 60_000, &mut headers).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(
                "Resource 'mi' uses managed identity and no managed-identity token is available"
            ),
            "{message}"
        );
        assert!(!message.contains("mi-token"));
    }
}
