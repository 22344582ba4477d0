//! Group commit: many writers share one flush (DESIGN.md "Durability").
//!
//! A writer applies its change in memory, then calls [`GroupCommit::durable`],
//! which takes a ticket and waits until a flush that started after the ticket was
//! taken has finished. One flusher task runs flushes back to back while tickets
//! are outstanding, so under load each flush covers every write that arrived
//! during the previous one, and a lone writer waits for exactly one flush.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Notify, watch};

/// The progress of flushing: the last ticket covered, or the failure that stopped it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Flushed {
    Through(u64),
    Failed(String),
}

#[derive(Debug)]
pub struct GroupCommit {
    issued: AtomicU64,
    wake: Arc<Notify>,
    flushed: watch::Sender<Flushed>,
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Let the flusher notice that its owner is gone, and exit.
        self.wake.notify_one();
    }
}

impl GroupCommit {
    /// Starts the flusher task, which calls `flush` (a blocking function) on the
    /// blocking thread pool. Must be called inside a tokio runtime. The task ends
    /// when the `GroupCommit` is dropped.
    pub fn start<F>(flush: F) -> Arc<GroupCommit>
    where
        F: Fn() -> Result<(), String> + Send + Sync + 'static,
    {
        let (flushed, _) = watch::channel(Flushed::Through(0));
        let wake = Arc::new(Notify::new());
        let group = Arc::new(GroupCommit {
            issued: AtomicU64::new(0),
            wake: wake.clone(),
            flushed,
        });
        let flush = Arc::new(flush);
        let weak = Arc::downgrade(&group);
        tokio::spawn(async move {
            loop {
                // `notify_one` stores a permit, so a ticket issued while a flush
                // runs is never missed.
                let notified = wake.notified();
                let target = {
                    let Some(group) = weak.upgrade() else { return };
                    let target = group.issued.load(Ordering::SeqCst);
                    match &*group.flushed.borrow() {
                        Flushed::Through(done) if target > *done => Some(target),
                        Flushed::Through(_) => None,
                        Flushed::Failed(_) => return,
                    }
                };
                let Some(target) = target else {
                    notified.await;
                    continue;
                };
                let flush = flush.clone();
                let result = tokio::task::spawn_blocking(move || flush())
                    .await
                    .map_err(|e| format!("flush task failed: {e}"))
                    .and_then(|r| r);
                let Some(group) = weak.upgrade() else { return };
                match result {
                    Ok(()) => group.flushed.send_replace(Flushed::Through(target)),
                    Err(e) => {
                        tracing::error!(error = %e, "flush failed; refusing further writes");
                        group.flushed.send_replace(Flushed::Failed(e))
                    }
                };
            }
        });
        group
    }

    /// Whether a flush has failed (writes can no longer be made durable).
    pub fn failure(&self) -> Option<String> {
        match &*self.flushed.borrow() {
            Flushed::Failed(e) => Some(e.clone()),
            Flushed::Through(_) => None,
        }
    }

    /// Waits until everything written before this call is durable.
    pub async fn durable(&self) -> Result<(), String> {
        // The ticket is taken after the caller's write was applied in memory, and
        // the flusher reads `issued` before it flushes, so a flush that covers
        // this ticket started after the write.
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = self.flushed.subscribe();
        self.wake.notify_one();
        let state = rx
            .wait_for(|f| match f {
                Flushed::Through(n) => *n >= ticket,
                Flushed::Failed(_) => true,
            })
            .await
            .map_err(|_| "the flusher stopped".to_owned())?;
        match &*state {
            Flushed::Through(_) => Ok(()),
            Flushed::Failed(e) => Err(e.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_flushes() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let counter = flushes.clone();
        let group = GroupCommit::start(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            Ok(())
        });
        let writers: Vec<_> = (0..200)
            .map(|_| {
                let group = group.clone();
                tokio::spawn(async move { group.durable().await })
            })
            .collect();
        for w in writers {
            w.await.unwrap().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!((1..200).contains(&n), "{n} flushes for 200 writers");
    }

    #[tokio::test]
    async fn a_failed_flush_fails_the_waiters() {
        let group = GroupCommit::start(|| Err("disk on fire".to_owned()));
        assert_eq!(group.durable().await, Err("disk on fire".to_owned()));
        assert!(group.durable().await.is_err());
    }
}
