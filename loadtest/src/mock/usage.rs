//! The token usage the mock reports, and its ledger. Every call that reports usage gets fresh
//! numbers, derived from the request body's size and a per-mock counter, so that totals a test
//! compares cannot match by luck; cached and reasoning tokens are nonzero on some calls. The
//! ledger adds up what the mock actually sent: a JSON answer when it is built, a stream's usage
//! once its last event was handed over, a run's usage the first time a run is answered with it
//! (however often it is read afterwards).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What the mock reported, added up: overall, or for one deployment or model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Answers that carried usage.
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
}

/// Every usage the mock reported: the overall totals, and the totals per deployment (the
/// deployment in the path) or model (the v1 API's `model`, the inference API's
/// `azureml-model-deployment`, a response's or a run's `model`; `""` when there is none). What
/// `GET /_mock/usage` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageLedger {
    pub total: UsageTotals,
    pub by_model: BTreeMap<String, UsageTotals>,
}

/// The numbers of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drawn {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    pub reasoning: u64,
}

impl Drawn {
    pub fn total(&self) -> u64 {
        self.prompt + self.completion
    }

    /// Chat completions' `usage`, as Azure OpenAI sends it.
    pub fn chat(&self) -> Value {
        json!({
            "completion_tokens": self.completion,
            "completion_tokens_details": {"accepted_prediction_tokens": 0, "audio_tokens": 0,
                                          "reasoning_tokens": self.reasoning, "rejected_prediction_tokens": 0},
            "prompt_tokens": self.prompt,
            "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": self.cached},
            "total_tokens": self.total(),
        })
    }

    /// Legacy completions' and runs' `usage`: the three counts.
    pub fn plain(&self) -> Value {
        json!({"completion_tokens": self.completion, "prompt_tokens": self.prompt,
               "total_tokens": self.total()})
    }

    /// Embeddings' `usage`: prompt tokens only (draw them with no completion).
    pub fn embeddings(&self) -> Value {
        json!({"prompt_tokens": self.prompt, "total_tokens": self.total()})
    }

    /// The Responses API's `usage`.
    pub fn responses(&self) -> Value {
        json!({
            "input_tokens": self.prompt,
            // `cache_write_tokens`: the openai SDK's Response model requires it (3.x).
            "input_tokens_details": {"cached_tokens": self.cached, "cache_write_tokens": 0},
            "output_tokens": self.completion,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.total(),
        })
    }

    /// The numbers of a `usage` object the mock wrote (either shape).
    pub fn read(usage: &Value) -> Self {
        let count = |pointers: &[&str]| {
            pointers
                .iter()
                .find_map(|p| usage.pointer(p).and_then(Value::as_u64))
                .unwrap_or(0)
        };
        Self {
            prompt: count(&["/prompt_tokens", "/input_tokens"]),
            completion: count(&["/completion_tokens", "/output_tokens"]),
            cached: count(&[
                "/prompt_tokens_details/cached_tokens",
                "/input_tokens_details/cached_tokens",
            ]),
            reasoning: count(&[
                "/completion_tokens_details/reasoning_tokens",
                "/output_tokens_details/reasoning_tokens",
            ]),
        }
    }
}

/// Draws the numbers and keeps the ledger.
#[derive(Default)]
pub struct Meter {
    calls: AtomicU64,
    ledger: Mutex<UsageLedger>,
    /// Runs and background responses already counted.
    runs: Mutex<HashSet<String>>,
}

impl Meter {
    /// Fresh numbers for a call whose request body has `body_len` bytes.
    pub fn draw(&self, body_len: usize) -> Drawn {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let size = body_len as u64;
        let prompt = size.div_ceil(4).max(1) + n % 7;
        let completion = 5 + (n * 7 + size) % 23;
        Drawn {
            prompt,
            completion,
            cached: if n.is_multiple_of(3) {
                prompt.min(1 + n % 5)
            } else {
                0
            },
            reasoning: if n % 4 == 1 {
                completion.min(1 + n % 6)
            } else {
                0
            },
        }
    }

    /// Counts usage reported for `model`.
    pub fn record(&self, model: &str, drawn: &Drawn) {
        let mut ledger = self.ledger.lock().unwrap();
        add(&mut ledger.total, drawn);
        add(ledger.by_model.entry(model.to_string()).or_default(), drawn);
    }

    /// Counts the usage of a run answered alone (`"object": "thread.run"`), or of a background
    /// response read back, once per object.
    pub fn record_run(&self, run: &Value) {
        let (Some(id), usage) = (run["id"].as_str(), &run["usage"]) else {
            return;
        };
        if !(run["object"] == "thread.run" || run["object"] == "response") || !usage.is_object() {
            return;
        }
        if self.runs.lock().unwrap().insert(id.to_string()) {
            self.record(run["model"].as_str().unwrap_or(""), &Drawn::read(usage));
        }
    }

    pub fn ledger(&self) -> UsageLedger {
        self.ledger.lock().unwrap().clone()
    }
}

fn add(totals: &mut UsageTotals, drawn: &Drawn) {
    totals.requests += 1;
    totals.prompt_tokens += drawn.prompt;
    totals.completion_tokens += drawn.completion;
    totals.total_tokens += drawn.total();
    totals.cached_tokens += drawn.cached;
    totals.reasoning_tokens += drawn.reasoning;
}
