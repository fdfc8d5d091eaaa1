//! Applies admin changes to the catalog: the semantic rules (endpoint form, key required unless
//! managed identity, event windows), encryption of upstream keys, attendee key issuing, and the
//! change notification that wakes the sync streams. Handlers parse JSON; the rules live here.
//!
//! A stored upstream key belongs to the endpoint host it was given for: an update that moves the
//! endpoint to another host must bring the new host's key, and a managed-identity resource stores
//! no key at all. The store applies "keep the stored key" in the UPDATE itself, so two admins
//! editing one resource at once cannot put a key back that the other replaced or moved.

use std::sync::Arc;

use chrono::Utc;

use super::endpoint::{endpoint_origin, validate_endpoint, validate_foundry_project_endpoint};
use super::model::{Attendee, Event, ModelType, Resource};
use super::store::{CatalogStore, KeyWrite, StoreError};
use super::window::{parse_instant, parse_time_zone};
use crate::identity::Scope;
use crate::secrets::{KeyCipher, KeyHasher, Secret, random_token};
use crate::sync::ChangeFeed;

/// What a client (admin, edge, catalog reader) is told when the database fails. The database's
/// own text may name hosts, users or SQL: it goes to the log, never to a client.
pub const CATALOG_UNAVAILABLE: &str = "The catalog database is unavailable; retry shortly.";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{kind} '{id}' not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl CatalogError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        CatalogError::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl From<StoreError> for CatalogError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, id } => CatalogError::NotFound { kind, id },
            StoreError::Conflict(m) => CatalogError::Conflict(m),
            StoreError::UnknownResource(id) => {
                CatalogError::invalid("resource_ids", format!("no resource with id '{id}'"))
            }
            other => CatalogError::Store(other),
        }
    }
}

pub type CatalogResult<T> = Result<T, CatalogError>;

/// What the admin asked for the resource's key.
#[derive(Debug, Clone)]
pub enum KeyChange {
    /// Not mentioned: keep the stored one (on create: there is none).
    Keep,
    Set(Secret),
    Clear,
}

/// A resource as an admin describes it, before the rules are applied.
#[derive(Debug, Clone)]
pub struct ResourceSpec {
    pub friendly_name: String,
    pub deployment_name: String,
    pub model_type: ModelType,
    pub endpoint_url: String,
    pub key: KeyChange,
    pub region: String,
    pub use_managed_identity: bool,
    pub identity_client_id: Option<String>,
    pub active: bool,
    pub use_max_completion_tokens: bool,
}

#[derive(Debug, Clone)]
pub struct EventSpec {
    pub name: String,
    pub starts_at: String,
    pub ends_at: String,
    pub time_zone: String,
    pub max_token_cap: u32,
    pub daily_request_cap: u32,
    /// Tokens per attendee per UTC day; 0: no cap.
    pub daily_token_cap: u64,
    /// Tokens for the whole event; 0: no budget.
    pub token_budget: u64,
    pub organizer_name: String,
    pub organizer_email: String,
    pub active: bool,
    pub resource_ids: Vec<String>,
}

/// An attendee just registered, with the key shown this one time.
pub struct IssuedAttendee {
    pub attendee: Attendee,
    pub api_key: Secret,
}

pub struct Catalog {
    store: Arc<dyn CatalogStore>,
    cipher: Arc<KeyCipher>,
    hasher: KeyHasher,
    allow_insecure_upstreams: bool,
    changes: ChangeFeed,
}

impl Catalog {
    pub fn new(
        store: Arc<dyn CatalogStore>,
        cipher: Arc<KeyCipher>,
        allow_insecure_upstreams: bool,
        changes: ChangeFeed,
    ) -> Self {
        let hasher = KeyHasher::new(cipher.derive("aiproxy attendee key hash v1"));
        Self {
            store,
            cipher,
            hasher,
            allow_insecure_upstreams,
            changes,
        }
    }

    pub fn store(&self) -> &Arc<dyn CatalogStore> {
        &self.store
    }

    pub fn cipher(&self) -> &KeyCipher {
        &self.cipher
    }

    pub fn key_hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    pub fn change_feed(&self) -> &ChangeFeed {
        &self.changes
    }

    /// Applies the rules to `spec`; `existing` is the stored resource on an update. Returns the
    /// resource (its `encrypted_key` as the write will leave it) and what the write does to the key.
    fn build_resource(
        &self,
        id: String,
        spec: ResourceSpec,
        existing: Option<&Resource>,
    ) -> CatalogResult<(Resource, KeyWrite)> {
        let friendly_name = required_text("friendly_name", &spec.friendly_name)?;
        let deployment_name = required_text("deployment_name", &spec.deployment_name)?;
        if deployment_name.contains('/') || deployment_name.contains('?') {
            return Err(CatalogError::invalid(
                "deployment_name",
                "must not contain '/' or '?': it is the deployment's name as Azure shows it",
            ));
        }
        let endpoint_url = validate_endpoint(&spec.endpoint_url, self.allow_insecure_upstreams)
            .map_err(|m| CatalogError::invalid("endpoint_url", m))?;
        if spec.model_type == ModelType::FoundryAgent {
            validate_foundry_project_endpoint(&endpoint_url, self.allow_insecure_upstreams)
                .map_err(|m| CatalogError::invalid("endpoint_url", m))?;
        }
        if spec.use_managed_identity && Scope::for_model_type(spec.model_type).is_none() {
            return Err(CatalogError::invalid(
                "use_managed_identity",
                format!(
                    "not available for {} resources (no Entra ID scope is defined for them); give a key instead",
                    spec.model_type
                ),
            ));
        }
        let key = self.key_write(spec.key, spec.use_managed_identity, &endpoint_url, existing)?;
        let encrypted_key = match &key {
            KeyWrite::Keep { .. } => existing.and_then(|r| r.encrypted_key.clone()),
            KeyWrite::Replace(sealed) => Some(sealed.clone()),
            KeyWrite::Drop => None,
        };
        let identity_client_id = spec
            .identity_client_id
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        if let Some(client_id) = &identity_client_id
            && uuid::Uuid::parse_str(client_id).is_err()
        {
            return Err(CatalogError::invalid(
                "identity_client_id",
                "must be the client id (a GUID) of a user-assigned managed identity",
            ));
        }
        let resource = Resource {
            id,
            friendly_name,
            deployment_name,
            model_type: spec.model_type,
            endpoint_url,
            region: spec.region.trim().to_string(),
            use_managed_identity: spec.use_managed_identity,
            identity_client_id,
            active: spec.active,
            use_max_completion_tokens: spec.use_max_completion_tokens,
            encrypted_key,
        };
        Ok((resource, key))
    }

    /// The key rules: a managed-identity resource stores none (one given is refused); any other
    /// needs one, and keeps its stored key only while its endpoint stays on the same origin.
    fn key_write(
        &self,
        change: KeyChange,
        managed_identity: bool,
        endpoint_url: &str,
        existing: Option<&Resource>,
    ) -> CatalogResult<KeyWrite> {
        let given = match &change {
            KeyChange::Set(key) if !key.expose().trim().is_empty() => Some(key.expose().trim()),
            _ => None,
        };
        if managed_identity {
            if given.is_some() {
                return Err(CatalogError::invalid(
                    "key",
                    "must not be given when use_managed_identity is true: the proxy authenticates \
                     with its managed identity and stores no key for this resource",
                ));
            }
            return Ok(KeyWrite::Drop);
        }
        if let Some(key) = given {
            return Ok(KeyWrite::Replace(self.cipher.encrypt(key)));
        }
        let stored = existing.filter(|r| r.encrypted_key.is_some());
        let (KeyChange::Keep, Some(stored)) = (&change, stored) else {
            return Err(CatalogError::invalid(
                "key",
                "required unless use_managed_identity is true (then the proxy authenticates with its managed identity and no key is stored)",
            ));
        };
        let origin = endpoint_origin(endpoint_url);
        let stored_origin = endpoint_origin(&stored.endpoint_url);
        if origin != stored_origin {
            return Err(CatalogError::invalid(
                "key",
                format!(
                    "required when endpoint_url moves to another host ({stored_origin} → {origin}): \
                     the stored key is only ever sent to the host it was given for; send the new host's key"
                ),
            ));
        }
        Ok(KeyWrite::Keep { origin })
    }

    pub async fn create_resource(&self, spec: ResourceSpec) -> CatalogResult<Resource> {
        let (resource, _) = self.build_resource(uuid::Uuid::new_v4().to_string(), spec, None)?;
        let version = self.store.create_resource(&resource).await?;
        self.changes.notify(version);
        Ok(resource)
    }

    pub async fn update_resource(&self, id: &str, spec: ResourceSpec) -> CatalogResult<Resource> {
        let existing = self.get_resource(id).await?;
        let (resource, key) = self.build_resource(id.to_string(), spec, Some(&existing))?;
        let (version, stored) = self.store.update_resource(&resource, &key).await?;
        self.changes.notify(version);
        Ok(stored)
    }

    pub async fn delete_resource(&self, id: &str) -> CatalogResult<()> {
        let version = self.store.delete_resource(id).await?;
        self.changes.notify(version);
        Ok(())
    }

    pub async fn get_resource(&self, id: &str) -> CatalogResult<Resource> {
        self.store
            .get_resource(id)
            .await?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "resource",
                id: id.to_string(),
            })
    }

    fn build_event(&self, id: String, spec: EventSpec) -> CatalogResult<Event> {
        let name = required_text("name", &spec.name)?;
        let zone =
            parse_time_zone(&spec.time_zone).map_err(|m| CatalogError::invalid("time_zone", m))?;
        let starts_at = parse_instant(&spec.starts_at, zone)
            .map_err(|m| CatalogError::invalid("starts_at", m))?;
        let ends_at =
            parse_instant(&spec.ends_at, zone).map_err(|m| CatalogError::invalid("ends_at", m))?;
        if ends_at <= starts_at {
            return Err(CatalogError::invalid("ends_at", "must be after starts_at"));
        }
        let email = spec.organizer_email.trim().to_string();
        if !email.is_empty() && !email.contains('@') {
            return Err(CatalogError::invalid(
                "organizer_email",
                "must be an email address",
            ));
        }
        let mut resource_ids: Vec<String> = Vec::new();
        for rid in spec.resource_ids {
            let rid = rid.trim().to_string();
            if !resource_ids.contains(&rid) {
                resource_ids.push(rid);
            }
        }
        Ok(Event {
            id,
            name,
            starts_at_ms: starts_at.timestamp_millis(),
            ends_at_ms: ends_at.timestamp_millis(),
            time_zone: zone.name().to_string(),
            max_token_cap: spec.max_token_cap,
            daily_request_cap: spec.daily_request_cap,
            daily_token_cap: spec.daily_token_cap,
            token_budget: spec.token_budget,
            organizer_name: spec.organizer_name.trim().to_string(),
            organizer_email: email,
            active: spec.active,
            resource_ids,
        })
    }

    pub async fn create_event(&self, spec: EventSpec) -> CatalogResult<Event> {
        let event = self.build_event(uuid::Uuid::new_v4().to_string(), spec)?;
        let version = self.store.create_event(&event).await?;
        self.changes.notify(version);
        Ok(event)
    }

    pub async fn update_event(&self, id: &str, spec: EventSpec) -> CatalogResult<Event> {
        let event = self.build_event(id.to_string(), spec)?;
        let version = self.store.update_event(&event).await?;
        self.changes.notify(version);
        Ok(event)
    }

    pub async fn delete_event(&self, id: &str) -> CatalogResult<()> {
        let version = self.store.delete_event(id).await?;
        self.changes.notify(version);
        Ok(())
    }

    pub async fn get_event(&self, id: &str) -> CatalogResult<Event> {
        self.store
            .get_event(id)
            .await?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "event",
                id: id.to_string(),
            })
    }

    /// Registers an attendee and returns their key: generated here, stored only as a hash.
    pub async fn add_attendee(
        &self,
        event_id: &str,
        user_id: &str,
    ) -> CatalogResult<IssuedAttendee> {
        let user_id = required_text("user_id", user_id)?;
        if user_id.len() > 256 || user_id.contains('/') {
            return Err(CatalogError::invalid(
                "user_id",
                "must be at most 256 characters without '/' (an email address or a login works)",
            ));
        }
        let api_key = Secret::new(random_token("aip_"));
        let attendee = Attendee {
            event_id: event_id.to_string(),
            user_id,
            key_hash: self.hasher.hash(api_key.expose()),
            active: true,
            created_at_ms: Utc::now().timestamp_millis(),
        };
        let version = self.store.add_attendee(&attendee).await?;
        self.changes.notify(version);
        Ok(IssuedAttendee { attendee, api_key })
    }

    pub async fn set_attendee_active(
        &self,
        event_id: &str,
        user_id: &str,
        active: bool,
    ) -> CatalogResult<Attendee> {
        let (version, attendee) = self
            .store
            .set_attendee_active(event_id, user_id, active)
            .await?;
        self.changes.notify(version);
        Ok(attendee)
    }
}

fn required_text(field: &'static str, value: &str) -> CatalogResult<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(CatalogError::invalid(field, "required, a non-empty string"));
    }
    Ok(trimmed.to_string())
}
