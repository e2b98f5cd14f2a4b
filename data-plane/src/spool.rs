//! The on-disk spool for usage records the control plane could not take: one file per batch,
//! sealed with a key derived from the node token (payloads may be in them), named so that the
//! oldest sorts first. Bounded: when full, the oldest batches are dropped and counted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::logship::EncodedBatch;
use crate::metrics::Metrics;
use crate::seal::{PURPOSE_SPOOL, SealKey};

const AAD: &[u8] = b"aiproxy-log-spool-v1";

pub struct Spool {
    dir: PathBuf,
    key: SealKey,
    max_bytes: u64,
    metrics: Arc<Metrics>,
    /// (path, bytes, records), oldest first.
    files: Vec<(PathBuf, u64, u64)>,
    next_seq: u64,
}

fn parse_name(p: &Path) -> Option<(u64, u64)> {
    let stem = p.file_name()?.to_str()?.strip_suffix(".batch")?;
    let (seq, count) = stem.split_once('-')?;
    Some((seq.parse().ok()?, count.parse().ok()?))
}

impl Spool {
    pub fn open(dir: PathBuf, node_token: &str, max_bytes: u64, metrics: Arc<Metrics>) -> Spool {
        let _ = std::fs::create_dir_all(&dir);
        let mut files: Vec<(u64, PathBuf, u64, u64)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let (seq, count) = parse_name(&p)?;
                let len = e.metadata().ok()?.len();
                Some((seq, p, len, count))
            })
            .collect();
        files.sort();
        let next_seq = files.last().map(|f| f.0 + 1).unwrap_or(0);
        let s = Spool {
            dir,
            key: SealKey::from_node_token(node_token, PURPOSE_SPOOL),
            max_bytes,
            metrics,
            files: files.into_iter().map(|(_, p, l, c)| (p, l, c)).collect(),
            next_seq,
        };
        s.update_gauges();
        if !s.files.is_empty() {
            tracing::info!(
                batches = s.files.len(),
                records = s.records(),
                "found spooled usage records; they ship first"
            );
        }
        s
    }

    fn update_gauges(&self) {
        self.metrics
            .spool_bytes
            .store(self.files.iter().map(|f| f.1).sum(), Ordering::Relaxed);
        self.metrics
            .spool_records
            .store(self.records(), Ordering::Relaxed);
    }

    pub fn records(&self) -> u64 {
        self.files.iter().map(|f| f.2).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Appends a batch; drops the oldest batches if the spool would exceed its bound.
    pub fn push(&mut self, batch: &EncodedBatch) {
        let sealed = self.key.seal(&batch.bytes, AAD);
        let count = batch.records;
        let path = self
            .dir
            .join(format!("{:020}-{count}.batch", self.next_seq));
        self.next_seq += 1;
        let tmp = path.with_extension("tmp");
        let written = std::fs::write(&tmp, &sealed).and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::error!(error = %e, records = count, "cannot spool usage records; they are dropped");
            self.metrics.dropped("spool_full", count);
            return;
        }
        self.files.push((path, sealed.len() as u64, count));
        while self.files.iter().map(|f| f.1).sum::<u64>() > self.max_bytes && self.files.len() > 1 {
            let (p, _, n) = self.files.remove(0);
            let _ = std::fs::remove_file(&p);
            self.metrics.dropped("spool_full", n);
            tracing::warn!(records = n, "log spool full: dropped the oldest batch");
        }
        self.update_gauges();
    }

    /// The oldest batch (undecryptable files are dropped and counted).
    pub fn peek(&mut self) -> Option<EncodedBatch> {
        while let Some((p, _, n)) = self.files.first().cloned() {
            let decoded = std::fs::read(&p)
                .ok()
                .and_then(|b| self.key.open(&b, AAD).ok())
                .and_then(EncodedBatch::decode);
            match decoded {
                Some(b) => return Some(b),
                None => {
                    tracing::warn!(file = %p.display(), "dropping an unreadable spool file (written with another node token?)");
                    let _ = std::fs::remove_file(&p);
                    self.files.remove(0);
                    self.metrics.dropped("spool_full", n);
                    self.update_gauges();
                }
            }
        }
        None
    }

    /// Removes the oldest batch once the control plane acknowledged it.
    pub fn pop(&mut self) {
        if !self.files.is_empty() {
            let (p, _, _) = self.files.remove(0);
            let _ = std::fs::remove_file(p);
            self.update_gauges();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1 as pb;

    fn batch(n: usize, tag: &str) -> EncodedBatch {
        EncodedBatch::new(&pb::LogBatch {
            batch_id: tag.into(),
            node_id: "n".into(),
            records: (0..n)
                .map(|i| pb::UsageRecord {
                    id: format!("{tag}-{i}"),
                    input_json: "secret prompt".into(),
                    ..Default::default()
                })
                .collect(),
        })
    }

    #[test]
    fn fifo_survives_reopen_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(Metrics::default());
        let mut s = Spool::open(dir.path().to_path_buf(), "tok", 1 << 20, m.clone());
        s.push(&batch(3, "a"));
        s.push(&batch(2, "b"));
        assert_eq!(s.records(), 5);
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let raw = std::fs::read(e.unwrap().path()).unwrap();
            assert!(
                !raw.windows(13).any(|w| w == b"secret prompt"),
                "spool files are sealed"
            );
        }
        let mut s = Spool::open(dir.path().to_path_buf(), "tok", 1 << 20, m.clone());
        assert_eq!(s.peek().unwrap().batch_id, "a");
        s.pop();
        assert_eq!(s.peek().unwrap().batch_id, "b");
        s.pop();
        assert!(s.peek().is_none());
        // Bounded: a tiny spool keeps only the newest batch and counts the drops.
        let mut s = Spool::open(dir.path().to_path_buf(), "tok", 10, m.clone());
        s.push(&batch(4, "c"));
        s.push(&batch(1, "d"));
        assert_eq!(s.peek().unwrap().batch_id, "d");
        assert_eq!(m.dropped_total(), 4);
        // Another node token cannot read it: dropped and counted, never misread.
        let mut other = Spool::open(dir.path().to_path_buf(), "other", 1 << 20, m.clone());
        assert!(other.peek().is_none());
        assert_eq!(m.dropped_total(), 5);
    }
}
