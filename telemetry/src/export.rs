//! Where and at what priority OTLP export runs: off the proxy's runtime, below its requests.
//!
//! tonic's channel runs its connection on the runtime it is made in, and hyper encodes each
//! request body there: on the proxy's runtime, a full batch of spans (512 by default, millions of
//! instructions) was encoded and dropped in one poll that every request on that worker waited
//! behind, and a flush needed that runtime to be free. OTLP/gRPC export gets a runtime of its own.
//!
//! The export threads (that runtime's, and the SDK's batch span processor's, which converts each
//! batch to protobuf and, over OTLP/HTTP, encodes it) run at a lower CPU priority than the rest
//! of the process: export is work that can wait, so on a busy core the scheduler runs requests
//! first and a batch is exported in the gaps between them. A core kept saturated fills the SDK's
//! span queue (`OTEL_BSP_MAX_QUEUE_SIZE`, 2,048) and spans are dropped, as the SDK does whenever
//! export falls behind, instead of requests being slowed.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::runtime::{Builder, Runtime};

use crate::TelemetryError;

/// How much lower the export threads' priority is than the process's (a nice increment; Linux
/// keeps a nice value per thread).
const EXPORT_NICE: i32 = 10;

/// One worker thread, made on first use and kept for the life of the process (an exporter may
/// be used until the process ends). Make tonic exporters inside its context (`enter`).
pub(crate) fn runtime() -> Result<&'static Runtime, TelemetryError> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-export")
                .on_thread_start(lower_priority)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| TelemetryError::ExportRuntime(e.clone()))
}

/// Lowers the calling thread's CPU priority by [`EXPORT_NICE`], once per thread. Lowering a
/// priority needs no privilege; if it fails anyway, export runs as before.
fn lower_priority() {
    thread_local! {
        static LOWERED: Cell<bool> = const { Cell::new(false) };
    }
    if LOWERED.replace(true) {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: `nice` only changes the calling thread's scheduling priority (on Linux, glibc's
    // `nice` is `setpriority(PRIO_PROCESS, 0, …)`, which applies to the calling thread).
    unsafe {
        libc::nice(EXPORT_NICE);
    }
}

/// The SDK's span exporter, exporting at the export threads' priority. Only for the batch span
/// processor, which calls `export` on its own thread (a simple processor would call it on the
/// thread that ends a span: a request's).
#[derive(Debug)]
pub(crate) struct Background<E>(pub E);

impl<E: SpanExporter> SpanExporter for Background<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        lower_priority();
        self.0.export(batch)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}
