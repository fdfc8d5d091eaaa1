//! Daily request caps (per attendee, per UTC day), held across the fleet without a call per
//! request: the edge takes small leases from the control plane's counter and spends them locally.
//! A lease that another edge holds unspent is lost for the day, so leases stay small (a twentieth of
//! the cap, at most 20). If the control plane cannot be reached the request is let through (the
//! edge keeps serving when the control plane is down) and a warning is logged.

use std::collections::HashMap;
use std::sync::Mutex;

use aiproxy_proto::v1 as pb;
use chrono::{Duration, Utc};

use crate::control_calls::ControlPlaneCalls;

#[derive(Default)]
pub struct RequestQuota {
    /// (event, user, day) → requests leased and not yet spent.
    leases: Mutex<HashMap<(String, String, String), u32>>,
}

/// The cap is reached; retry after this many seconds (UTC midnight).
pub struct CapReached {
    pub cap: u32,
    pub retry_after_secs: i64,
}

impl RequestQuota {
    fn spend(&self, key: &(String, String, String), add: u32) -> bool {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let left = leases.entry(key.clone()).or_default();
        *left += add;
        if *left > 0 {
            *left -= 1;
            true
        } else {
            false
        }
    }

    pub async fn take(
        &self,
        control: &ControlPlaneCalls,
        event: &pb::EventInfo,
        user_id: &str,
    ) -> Result<(), CapReached> {
        let cap = event.daily_request_cap;
        if cap == 0 {
            return Ok(());
        }
        let now = Utc::now();
        let day = now.format("%Y-%m-%d").to_string();
        let key = (event.id.clone(), user_id.to_string(), day.clone());
        if self.spend(&key, 0) {
            return Ok(());
        }
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, _, d), _| *d == day);
        let wanted = (cap / 20).clamp(1, 20);
        match control
            .lease_requests(&event.id, user_id, &day, wanted)
            .await
        {
            Ok(granted) if self.spend(&key, granted) => Ok(()),
            Ok(_) => {
                let midnight = (now + Duration::days(1))
                    .date_naive()
                    .and_hms_opt(0, 0, 0)
                    .unwrap_or_default()
                    .and_utc();
                Err(CapReached {
                    cap,
                    retry_after_secs: (midnight - now).num_seconds().max(1),
                })
            }
            Err(e) => {
                tracing::warn!(event = %event.id, error = %e, "daily cap not checked: the control plane is unreachable");
                Ok(())
            }
        }
    }
}
