//! The series a finished request records on, bound once per request shape.
//!
//! Given a measurement's labels, the SDK finds its series by hashing every label's key and value
//! under a lock; a metered request makes up to nine measurements, so that lookup was most of what
//! metrics cost per request. Here a request's [`Shape`] (everything its labels are made from) is
//! looked up once, and each of its measurements goes to a handle bound to its series
//! (`Counter::bind`, `Histogram::bind`). An instrument is bound the first time a request of that
//! shape records on it: a series no request measured is never shown (a cumulative reader would
//! show it as zeros).
//!
//! The cache holds at most [`CAPACITY`] shapes and, full, is emptied and fills again, at most once
//! per [`REFILL_AFTER`]: until then a new shape is measured through a series of its own, bound
//! for that request only (what every request cost before this cache), so more live shapes than
//! the cache holds never make it churn and the shapes it holds stay bound. Shapes are
//! made of catalog names (events, resources, deployments), route families, status codes and
//! bounded method labels, so a client cannot grow it. Emptying it unbinds its series: with delta
//! temporality the SDK then forgets those no request measures any more (a deleted event's).
//! Until then they stay bound: a deleted event's series are kept, and a series bound while the
//! SDK was past its cardinality limit records on the overflow series until the cache empties.

use std::hash::BuildHasher as _;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundCounter, BoundHistogram};

use super::{Finished, operation_of, status_class};
use crate::maps::FastMap;

/// Shapes held at most. A shape binds up to two series of an instrument (input and output
/// tokens), so what the cache binds stays well below the SDK's default cardinality limit (2,000
/// series per instrument, past which measurements go to its overflow series). That limit counts
/// every series the SDK holds, not only the bound ones: with cumulative temporality it keeps each
/// series ever measured, whatever this cache holds. A busier edge still counts every request, only
/// with more lookups (each shape bound again after the cache empties).
pub(super) const CAPACITY: usize = 500;

/// How long a full cache keeps its shapes before it may be emptied for new ones.
const REFILL_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// What a finished request's labels are made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Shape<'a> {
    pub family: &'static str,
    pub event_id: &'a str,
    pub status: u16,
    pub method: &'static str,
    pub served: Option<Served<'a>>,
}

/// The upstream that served it: resource, deployment and provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Served<'a> {
    pub resource_id: &'a str,
    pub model: &'a str,
    pub provider: Option<&'static str>,
}

#[derive(Clone, Copy)]
pub(super) enum TokenType {
    Input = 0,
    Output = 1,
}

impl TokenType {
    fn as_str(self) -> &'static str {
        match self {
            TokenType::Input => "input",
            TokenType::Output => "output",
        }
    }
}

impl<'a> Shape<'a> {
    pub fn of(f: &Finished<'a>) -> Self {
        Shape {
            family: f.family,
            event_id: f.event_id,
            status: f.status,
            method: aiproxy_telemetry::http_method(f.method.as_str()),
            served: f.served.as_ref().map(|s| Served {
                resource_id: s.resource_id,
                model: s.model,
                provider: s.provider,
            }),
        }
    }

    pub fn family_label(&self) -> KeyValue {
        KeyValue::new("aiproxy.route.family", self.family)
    }

    fn event_label(&self) -> KeyValue {
        KeyValue::new("aiproxy.event.id", self.event_id.to_string())
    }

    /// `aiproxy.edge.requests`.
    pub fn request_labels(&self) -> Vec<KeyValue> {
        let mut labels = vec![
            self.family_label(),
            self.event_label(),
            KeyValue::new("http.response.status_class", status_class(self.status)),
        ];
        if let Some(served) = &self.served {
            labels.push(KeyValue::new(
                "aiproxy.resource.id",
                served.resource_id.to_string(),
            ));
        }
        labels
    }

    /// `http.server.request.duration`.
    pub fn http_labels(&self) -> [KeyValue; 3] {
        [
            KeyValue::new("http.request.method", self.method),
            KeyValue::new("http.response.status_code", i64::from(self.status)),
            self.family_label(),
        ]
    }

    /// `aiproxy.edge.tokens` (served calls only).
    pub fn token_labels(&self, kind: TokenType) -> [KeyValue; 3] {
        [
            self.event_label(),
            self.model_label(),
            KeyValue::new("gen_ai.token.type", kind.as_str()),
        ]
    }

    /// The GenAI conventions' labels (served calls with a provider): with a token type for
    /// `gen_ai.client.token.usage`, else with `error.type` on a failed call for the durations.
    pub fn genai_labels(&self, kind: Option<TokenType>) -> Vec<KeyValue> {
        let provider = self.served.and_then(|s| s.provider).unwrap_or_default();
        let mut labels = vec![
            KeyValue::new("gen_ai.operation.name", operation_of(self.family)),
            KeyValue::new("gen_ai.provider.name", provider),
            self.model_label(),
        ];
        match kind {
            Some(kind) => labels.push(KeyValue::new("gen_ai.token.type", kind.as_str())),
            None if self.status >= 400 => {
                labels.push(KeyValue::new("error.type", self.status.to_string()))
            }
            None => {}
        }
        labels
    }

    fn model_label(&self) -> KeyValue {
        let model = self.served.map(|s| s.model).unwrap_or_default();
        KeyValue::new("gen_ai.request.model", model.to_string())
    }
}

/// A shape's own copy of its names (what the cache keeps).
#[derive(Debug)]
struct OwnedShape {
    family: &'static str,
    event_id: Box<str>,
    status: u16,
    method: &'static str,
    served: Option<(Box<str>, Box<str>, Option<&'static str>)>,
}

impl OwnedShape {
    fn new(shape: &Shape<'_>) -> Self {
        OwnedShape {
            family: shape.family,
            event_id: shape.event_id.into(),
            status: shape.status,
            method: shape.method,
            served: shape
                .served
                .map(|s| (s.resource_id.into(), s.model.into(), s.provider)),
        }
    }

    fn shape(&self) -> Shape<'_> {
        Shape {
            family: self.family,
            event_id: &self.event_id,
            status: self.status,
            method: self.method,
            served: self
                .served
                .as_ref()
                .map(|(resource_id, model, provider)| Served {
                    resource_id,
                    model,
                    provider: *provider,
                }),
        }
    }
}

/// One shape's bound handles, each bound at its first measurement.
#[derive(Debug)]
pub(super) struct Series {
    shape: OwnedShape,
    pub requests: OnceLock<BoundCounter<u64>>,
    pub http_duration: OnceLock<BoundHistogram<f64>>,
    pub added_latency: OnceLock<BoundHistogram<f64>>,
    /// By [`TokenType`].
    pub tokens: [OnceLock<BoundCounter<u64>>; 2],
    pub token_usage: [OnceLock<BoundHistogram<u64>>; 2],
    pub operation_duration: OnceLock<BoundHistogram<f64>>,
    pub first_token: OnceLock<BoundHistogram<f64>>,
}

impl Series {
    fn new(shape: &Shape<'_>) -> Self {
        Series {
            shape: OwnedShape::new(shape),
            requests: OnceLock::new(),
            http_duration: OnceLock::new(),
            added_latency: OnceLock::new(),
            tokens: Default::default(),
            token_usage: Default::default(),
            operation_duration: OnceLock::new(),
            first_token: OnceLock::new(),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct SeriesCache {
    /// foldhash, as in [`crate::maps`]: a shape is made of catalog names, route families, status
    /// codes and bounded method labels (std's SipHash was 1 % of a call's instructions here).
    hasher: foldhash::fast::RandomState,
    shapes: RwLock<Shapes>,
}

#[derive(Debug)]
struct Shapes {
    /// By the shape's hash; a collision shares the vector.
    by_hash: FastMap<u64, Vec<Arc<Series>>>,
    len: usize,
    /// When the cache was last emptied (or made).
    since: std::time::Instant,
}

impl Default for Shapes {
    fn default() -> Self {
        Shapes {
            by_hash: FastMap::default(),
            len: 0,
            since: std::time::Instant::now(),
        }
    }
}

impl Shapes {
    fn find(&self, hash: u64, shape: &Shape<'_>) -> Option<Arc<Series>> {
        self.by_hash
            .get(&hash)?
            .iter()
            .find(|series| series.shape.shape() == *shape)
            .cloned()
    }
}

impl SeriesCache {
    /// The series of `shape`, made (unbound) on its first request.
    pub fn get(&self, shape: &Shape<'_>) -> Arc<Series> {
        let hash = self.hasher.hash_one(shape);
        let held = self.shapes.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = held.find(hash, shape) {
            return series;
        }
        drop(held);
        let mut shapes = self.shapes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = shapes.find(hash, shape) {
            return series;
        }
        let series = Arc::new(Series::new(shape));
        // The emptied shapes are unbound (dropped) after the lock is released.
        let mut emptied = None;
        if shapes.len >= CAPACITY {
            if shapes.since.elapsed() < REFILL_AFTER {
                return series;
            }
            emptied = Some(std::mem::take(&mut *shapes));
        }
        shapes
            .by_hash
            .entry(hash)
            .or_default()
            .push(Arc::clone(&series));
        shapes.len += 1;
        drop(shapes);
        drop(emptied);
        series
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shapes.read().unwrap().len
    }

    /// Lets a full cache be emptied by its next new shape, as if [`REFILL_AFTER`] had passed.
    #[cfg(test)]
    pub fn age(&self) {
        let mut shapes = self.shapes.write().unwrap();
        shapes.since = std::time::Instant::now() - REFILL_AFTER;
    }
}
