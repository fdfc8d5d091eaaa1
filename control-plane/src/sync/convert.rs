//! Catalog rows to wire messages. `ResourceInfo`/`EventInfo` never carry a secret; only
//! `EdgeResource` (edge stream) adds the decrypted upstream key. Ownership records convert both
//! ways: edges send them. Usage records and summaries: edges send the former, read the latter.

use aiproxy_proto::v1 as pb;

use crate::catalog::model::{
    Attendee, Event, FoundryObject, ObjectKind, Removal, Resource, UsageRecord, UsageSum,
    UsageSummary,
};
use crate::identity::Scope;
use crate::secrets::KeyCipher;

pub fn resource_info(r: &Resource) -> pb::ResourceInfo {
    pb::ResourceInfo {
        id: r.id.clone(),
        friendly_name: r.friendly_name.clone(),
        deployment_name: r.deployment_name.clone(),
        model_type: r.model_type.as_str().to_string(),
        endpoint_url: r.endpoint_url.clone(),
        region: r.region.clone(),
        use_managed_identity: r.use_managed_identity,
        identity_client_id: r.identity_client_id.clone().unwrap_or_default(),
        active: r.active,
        has_key: r.encrypted_key.is_some(),
        use_max_completion_tokens: r.use_max_completion_tokens,
    }
}

pub fn edge_resource(r: &Resource, cipher: &KeyCipher) -> pb::EdgeResource {
    let api_key = match &r.encrypted_key {
        // A managed-identity resource authenticates with a token: a key stored before that rule
        // existed never travels.
        _ if r.use_managed_identity => String::new(),
        Some(sealed) => cipher.decrypt(sealed).unwrap_or_else(|e| {
            tracing::error!(resource = %r.id, error = %e, "upstream key cannot be decrypted; the edge gets none");
            String::new()
        }),
        None => String::new(),
    };
    let token_scope = match Scope::for_model_type(r.model_type) {
        Some(scope) if r.use_managed_identity => scope.as_str().to_string(),
        _ => String::new(),
    };
    pb::EdgeResource {
        info: Some(resource_info(r)),
        api_key,
        token_scope,
    }
}

pub fn event_info(e: &Event) -> pb::EventInfo {
    pb::EventInfo {
        id: e.id.clone(),
        name: e.name.clone(),
        starts_at_ms: e.starts_at_ms,
        ends_at_ms: e.ends_at_ms,
        time_zone: e.time_zone.clone(),
        max_token_cap: e.max_token_cap,
        daily_request_cap: e.daily_request_cap,
        organizer_name: e.organizer_name.clone(),
        organizer_email: e.organizer_email.clone(),
        active: e.active,
        resource_ids: e.resource_ids.clone(),
        daily_token_cap: e.daily_token_cap,
        token_budget: e.token_budget,
    }
}

pub fn edge_attendee(a: &Attendee) -> pb::EdgeAttendee {
    pb::EdgeAttendee {
        event_id: a.event_id.clone(),
        user_id: a.user_id.clone(),
        key_hash: a.key_hash.clone(),
        active: a.active,
    }
}

pub fn owned_object(o: FoundryObject) -> pb::OwnedObject {
    pb::OwnedObject {
        kind: o.kind,
        id: o.id,
        event_id: o.event_id,
        user_id: o.user_id,
        resource_id: o.resource_id,
        expires_at_ms: o.expires_at_ms,
        created_at_ms: o.created_at_ms,
        alias_of: o.alias_of,
    }
}

/// An object as an edge reports it. Its times are the control plane's to set (`ownership`).
pub fn foundry_object(o: pb::OwnedObject) -> FoundryObject {
    FoundryObject {
        kind: o.kind,
        id: o.id,
        event_id: o.event_id,
        user_id: o.user_id,
        resource_id: o.resource_id,
        created_at_ms: 0,
        expires_at_ms: 0,
        alias_of: o.alias_of,
    }
}

pub fn removal(r: &Removal) -> pb::Removal {
    let kind = match r.kind {
        ObjectKind::Resource => pb::ObjectKind::Resource,
        ObjectKind::Event => pb::ObjectKind::Event,
        ObjectKind::Attendee => pb::ObjectKind::Attendee,
    };
    pb::Removal {
        kind: kind as i32,
        id: r.id.clone(),
    }
}

/// A usage record as an edge reports it. The route family is not kept: usage is summed per
/// (event, attendee, resource, deployment, hour).
pub fn usage_record(r: pb::UsageRecord) -> UsageRecord {
    UsageRecord {
        event_id: r.event_id,
        user_id: r.user_id,
        resource_id: r.resource_id,
        deployment_name: r.deployment_name,
        status: r.status,
        started_at_ms: r.started_at_ms,
        duration_ms: u64::from(r.duration_ms),
        ttfb_ms: u64::from(r.ttfb_ms),
        streamed: r.streamed,
        usage_unknown: r.usage_unknown,
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.completion_tokens,
        total_tokens: r.total_tokens,
        cached_tokens: r.cached_tokens,
        reasoning_tokens: r.reasoning_tokens,
        once_key: r.once_key,
        follow_up: r.follow_up,
    }
}

/// Requests an edge summed per (event, attendee, resource, deployment, hour).
pub fn usage_sum(s: pb::UsageSum) -> UsageSum {
    UsageSum {
        event_id: s.event_id,
        user_id: s.user_id,
        resource_id: s.resource_id,
        deployment_name: s.deployment_name,
        hour_ms: s.hour_ms,
        requests: s.requests,
        errors: s.errors,
        streamed: s.streamed,
        usage_unknown: s.usage_unknown,
        prompt_tokens: s.prompt_tokens,
        completion_tokens: s.completion_tokens,
        total_tokens: s.total_tokens,
        cached_tokens: s.cached_tokens,
        reasoning_tokens: s.reasoning_tokens,
        duration_ms: s.duration_ms,
        ttfb_ms: s.ttfb_ms,
    }
}

pub fn usage_summary(s: UsageSummary) -> pb::UsageSummary {
    pb::UsageSummary {
        requests: s.requests,
        prompt_tokens: s.prompt_tokens,
        completion_tokens: s.completion_tokens,
        total_tokens: s.total_tokens,
        event_total_tokens: s.event_total_tokens,
    }
}
