//! Usage metering: one record per proxied request (who, which resource, which route family,
//! status, timings, and the tokens the upstream reported), made as the answer streams through
//! (`meter`), read from JSON answers and event streams (`scan`), and delivered to the control
//! plane in batches that are never lost and never counted twice (`delivery`).

pub mod delivery;
pub mod follow;
pub mod meter;
pub mod scan;

pub use delivery::{DeliverySettings, DeliveryStatus, UsageDelivery};
pub use follow::FollowUps;
pub use meter::{Drains, Metering, Served};
