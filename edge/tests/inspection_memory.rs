//! Inspecting a JSON body (the fields the token cap and routing need, and every object
//! reference) must cost about the body's own size, not a multiple of it: a 16 MiB body once took
//! ~290 MB as a `serde_json::Value`. A counting allocator measures the peak of what inspection
//! allocates on top of the body it reads.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use aiproxy_edge::proxy::foundry::references;
use aiproxy_edge::proxy::policy;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A 16 MiB chat body in the shape that hurt most: many small objects and strings.
fn big_body() -> Vec<u8> {
    let mut body = String::from(r#"{"model":"gpt-4o","max_tokens":100,"messages":["#);
    let message = r#"{"role":"user","content":[{"type":"text","text":"hello there, a short text"},{"type":"image_file","image_file":{"file_id":"file-abc"}}]},"#;
    while body.len() < 16 * 1024 * 1024 {
        body.push_str(message);
    }
    body.pop();
    body.push_str("]}");
    body.into_bytes()
}

#[test]
fn inspecting_a_large_body_costs_a_fraction_of_its_size() {
    let body = big_body();
    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);

    let call = policy::inspect(&body).expect("valid");
    assert_eq!(call.model.as_deref(), Some("gpt-4o"));
    let found = references::collect(&body).expect("valid");
    assert_eq!(found.len(), 1, "one distinct file id");
    drop(call);

    let extra = PEAK.load(Ordering::Relaxed) - baseline;
    println!(
        "inspection of a {} MiB body allocated at most {:.2} MiB ({:.3}x the body)",
        body.len() >> 20,
        extra as f64 / (1 << 20) as f64,
        extra as f64 / body.len() as f64
    );
    assert!(
        extra < body.len() / 4,
        "inspection allocated {extra} bytes for a {} byte body",
        body.len()
    );
}
