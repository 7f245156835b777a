//! The bounded queue between a publisher's read loop and one subscriber's writer.
//!
//! The publisher's loop only ever calls [`SubscriberQueue::push`], which never waits: when a
//! subscriber cannot keep up, its queue fills and *its* packets are dropped; the publisher
//! and the other subscribers are not slowed down. After an overflow of a video queue the
//! queue is flushed (what it holds is stale), every packet is dropped until the next keyframe
//! starts, and the caller is told to ask the publisher for one. The writer then resumes on a
//! keyframe with contiguous sequence numbers ([`Rewriter::resync`](crate::rewrite::Rewriter::resync)).
//! Audio just drops what does not fit.
//!
//! [`SharedQueue`] wraps it for two tasks (a mutex held for a push or pop, and a notifier).

use std::{collections::VecDeque, sync::Mutex};

use tokio::sync::Notify;

/// Default depth: ~0.5 s of 1 Mbit/s video.
pub const DEFAULT_CAPACITY: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// Dropped; when `request_keyframe`, the caller should ask the publisher for a keyframe.
    Dropped {
        request_keyframe: bool,
    },
}

/// What the writer gets: the item, and whether packets were skipped right before it.
#[derive(Debug, PartialEq, Eq)]
pub struct Popped<T> {
    pub item: T,
    pub after_skip: bool,
}

#[derive(Debug)]
pub struct SubscriberQueue<T> {
    items: VecDeque<(T, bool)>,
    capacity: usize,
    video: bool,
    waiting_for_keyframe: bool,
    skipped: bool,
    closed: bool,
    pub dropped: u64,
    pub overflows: u64,
}

impl<T> SubscriberQueue<T> {
    pub fn new(capacity: usize, video: bool) -> Self {
        SubscriberQueue {
            items: VecDeque::with_capacity(capacity.min(64)),
            capacity: capacity.max(1),
            video,
            waiting_for_keyframe: false,
            skipped: false,
            closed: false,
            dropped: 0,
            overflows: 0,
        }
    }

    /// Adds a packet; `keyframe_start` tells whether it is the first packet of a keyframe.
    pub fn push(&mut self, item: T, keyframe_start: bool) -> Push {
        if self.closed {
            return Push::Dropped {
                request_keyframe: false,
            };
        }
        if self.waiting_for_keyframe {
            if !keyframe_start {
                self.dropped += 1;
                return Push::Dropped {
                    request_keyframe: false,
                };
            }
            self.waiting_for_keyframe = false;
        }
        if self.items.len() >= self.capacity {
            self.overflows += 1;
            if self.video {
                self.dropped += self.items.len() as u64 + 1;
                self.items.clear();
                self.skipped = true;
                if keyframe_start {
                    // This very packet is a fresh start.
                    self.dropped -= 1;
                    self.items.push_back((item, true));
                    self.skipped = false;
                    return Push::Queued;
                }
                self.waiting_for_keyframe = true;
                return Push::Dropped {
                    request_keyframe: true,
                };
            }
            self.dropped += 1;
            self.skipped = true;
            return Push::Dropped {
                request_keyframe: false,
            };
        }
        let after_skip = std::mem::take(&mut self.skipped);
        self.items.push_back((item, after_skip));
        Push::Queued
    }

    pub fn pop(&mut self) -> Option<Popped<T>> {
        self.items
            .pop_front()
            .map(|(item, after_skip)| Popped { item, after_skip })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops everything and refuses further packets; the writer ends once it sees it.
    pub fn close(&mut self) {
        self.closed = true;
        self.items.clear();
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// A [`SubscriberQueue`] shared by one producer and one consumer task.
#[derive(Debug)]
pub struct SharedQueue<T> {
    queue: Mutex<SubscriberQueue<T>>,
    ready: Notify,
}

impl<T> SharedQueue<T> {
    pub fn new(capacity: usize, video: bool) -> Self {
        SharedQueue {
            queue: Mutex::new(SubscriberQueue::new(capacity, video)),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SubscriberQueue<T>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Never waits.
    pub fn push(&self, item: T, keyframe_start: bool) -> Push {
        let result = self.lock().push(item, keyframe_start);
        if result == Push::Queued {
            self.ready.notify_one();
        }
        result
    }

    /// Waits for the next packet; `None` once closed.
    pub async fn pop(&self) -> Option<Popped<T>> {
        loop {
            {
                let mut queue = self.lock();
                if let Some(popped) = queue.pop() {
                    return Some(popped);
                }
                if queue.is_closed() {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    pub fn close(&self) {
        self.lock().close();
        self.ready.notify_one();
    }

    /// (dropped packets, overflows)
    pub fn drops(&self) -> (u64, u64) {
        let queue = self.lock();
        (queue.dropped, queue.overflows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_video_queue_flushes_and_waits_for_a_keyframe() {
        let mut q = SubscriberQueue::new(3, true);
        for i in 0..3 {
            assert_eq!(q.push(i, false), Push::Queued);
        }
        assert_eq!(
            q.push(3, false),
            Push::Dropped {
                request_keyframe: true
            }
        );
        assert!(q.is_empty());
        // Delta frames are useless until a keyframe arrives, and ask for nothing more.
        assert_eq!(
            q.push(4, false),
            Push::Dropped {
                request_keyframe: false
            }
        );
        assert_eq!(q.push(5, true), Push::Queued);
        assert_eq!(q.push(6, false), Push::Queued);
        assert_eq!(
            q.pop(),
            Some(Popped {
                item: 5,
                after_skip: true
            })
        );
        assert_eq!(
            q.pop(),
            Some(Popped {
                item: 6,
                after_skip: false
            })
        );
        assert_eq!(q.pop(), None);
        assert_eq!((q.dropped, q.overflows), (5, 1));
    }

    #[test]
    fn a_keyframe_arriving_at_a_full_queue_restarts_it() {
        let mut q = SubscriberQueue::new(2, true);
        q.push(0, false);
        q.push(1, false);
        assert_eq!(q.push(2, true), Push::Queued);
        assert_eq!(q.len(), 1);
        assert_eq!(
            q.pop(),
            Some(Popped {
                item: 2,
                after_skip: true
            })
        );
    }

    #[test]
    fn audio_drops_only_what_does_not_fit() {
        let mut q = SubscriberQueue::new(2, false);
        q.push(0, false);
        q.push(1, false);
        assert_eq!(
            q.push(2, false),
            Push::Dropped {
                request_keyframe: false
            }
        );
        assert_eq!(q.pop().map(|p| p.item), Some(0));
        assert_eq!(q.push(3, false), Push::Queued);
        assert_eq!(q.pop().map(|p| p.item), Some(1));
        assert_eq!(
            q.pop(),
            Some(Popped {
                item: 3,
                after_skip: true
            })
        );
        assert_eq!(q.dropped, 1);
    }

    #[test]
    fn closed_queues_refuse_and_end() {
        let mut q = SubscriberQueue::new(2, false);
        q.push(0, false);
        q.close();
        assert_eq!(
            q.push(1, false),
            Push::Dropped {
                request_keyframe: false
            }
        );
        assert_eq!(q.pop(), None);
        assert!(q.is_closed());
    }

    #[tokio::test]
    async fn shared_queue_wakes_the_writer_and_ends_on_close() {
        let q = std::sync::Arc::new(SharedQueue::new(8, false));
        let writer = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(p) = q.pop().await {
                    got.push(p.item);
                }
                got
            })
        };
        for i in 0..5 {
            q.push(i, false);
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        q.close();
        let got = writer.await.unwrap();
        assert_eq!(got, [0, 1, 2, 3, 4]);
    }
}
