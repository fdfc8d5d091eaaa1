//! The catalog: resources (upstream Azure AI endpoints), events (who may call what, when) and
//! attendees (event keys). `model` holds the types and their invariants, `store` persists them,
//! `service` applies admin changes (validation, encryption, change notification) in one place.

pub mod endpoint;
pub mod model;
pub mod service;
pub mod store;
pub mod window;

pub use model::*;
