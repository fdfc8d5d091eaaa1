//! The last-known-good snapshot on disk (`AIPROXY_EDGE_STATE_DIR`), so an edge that restarts while
//! the control plane is unreachable serves at once instead of staying unready. The file holds
//! secrets (upstream keys, tokens), so it is AES-256-GCM sealed with a key derived from the edge
//! token, written atomically (temporary file, then rename) and readable by the owner only.

use std::path::{Path, PathBuf};

use aiproxy_proto::v1 as pb;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use prost::Message;

use super::CatalogSnapshot;

const FILE: &str = "snapshot.bin";

pub struct SnapshotFile {
    path: PathBuf,
    key: LessSafeKey,
}

impl SnapshotFile {
    pub fn new(dir: &Path, edge_token: &str) -> Self {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, edge_token.as_bytes());
        let raw = hmac::sign(&derive, b"aiproxy edge snapshot v1");
        let key =
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, raw.as_ref()).expect("32-byte key"));
        Self {
            path: dir.join(FILE),
            key,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored snapshot, if there is one this edge token can open.
    pub fn load(&self) -> Result<Option<CatalogSnapshot>, String> {
        let sealed = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        if sealed.len() < NONCE_LEN {
            return Err(format!("{} is truncated", self.path.display()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_string())?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut body)
            .map_err(|_| format!("{} was sealed with another edge token", self.path.display()))?;
        let update =
            pb::SyncUpdate::decode(&*plain).map_err(|e| format!("{}: {e}", self.path.display()))?;
        CatalogSnapshot::default().apply(update).map(Some)
    }

    pub fn store(&self, snapshot: &CatalogSnapshot) -> std::io::Result<()> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| std::io::Error::other("no randomness"))?;
        let mut sealed = snapshot.to_full_update().encode_to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut sealed,
            )
            .map_err(|_| std::io::Error::other("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = self.path.with_extension("tmp");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&temporary)?;
            file.write_all(&out)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> CatalogSnapshot {
        let update = pb::SyncUpdate {
            version: 7,
            full: true,
            catalog_id: "c1".into(),
            key_hash_secret: vec![3; 32],
            resources: vec![pb::EdgeResource {
                info: Some(pb::ResourceInfo {
                    id: "r1".into(),
                    friendly_name: "GPT".into(),
                    deployment_name: "gpt".into(),
                    model_type: "foundry-model".into(),
                    endpoint_url: "https://x.openai.azure.com".into(),
                    active: true,
                    ..Default::default()
                }),
                api_key: "sk-upstream-secret".into(),
                ..Default::default()
            }],
            events: vec![pb::EventInfo {
                id: "e1".into(),
                resource_ids: vec!["r1".into()],
                ..Default::default()
            }],
            tokens_included: true,
            tokens: vec![pb::ManagedIdentityToken {
                scope: "https://ai.azure.com/.default".into(),
                access_token: "eyJ.tok".into(),
                expires_on_ms: 42,
                ..Default::default()
            }],
            ..Default::default()
        };
        CatalogSnapshot::default().apply(update).unwrap()
    }

    #[test]
    fn round_trips_sealed_and_only_for_the_same_edge_token() {
        let dir = std::env::temp_dir().join(format!(
            "aiproxy-edge-state-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let file = SnapshotFile::new(&dir, "edge-token-1");
        assert!(file.load().unwrap().is_none(), "nothing stored yet");
        file.store(&snapshot()).unwrap();
        let raw = std::fs::read(file.path()).unwrap();
        assert!(
            !raw.windows(9).any(|w| w == b"sk-upstre"),
            "the file never holds a key in clear"
        );
        let back = file.load().unwrap().unwrap();
        assert!(back.loaded);
        assert_eq!((back.version, back.catalog_id.as_str()), (7, "c1"));
        assert_eq!(
            back.pool("e1", "foundry-model", "gpt").unwrap()[0]
                .api_key
                .as_deref(),
            Some("sk-upstream-secret")
        );
        assert_eq!(back.to_full_update().tokens[0].access_token, "eyJ.tok");
        assert!(SnapshotFile::new(&dir, "another-token").load().is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
