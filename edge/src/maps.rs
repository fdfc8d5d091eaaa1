//! The hash maps requests look things up in: the catalog snapshot's, the quota allowances, the
//! idle upstream connections, the metrics' bound series (`metrics::series`). Their keys are ids,
//! names and key hashes from the catalog, or what the edge builds from them, never a string a
//! client or an upstream chose, so they need no defence against crafted collisions and use
//! foldhash, seeded per process, instead of std's SipHash (about 5 % of a proxied call's
//! instructions when they used it). foldhash's seed is random per process, so even a key someone
//! could choose would need it to collide on purpose; still, a map keyed by what a client or an
//! upstream sends keeps std's `HashMap`.

pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
