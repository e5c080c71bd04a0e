//! One lock per idempotency key in flight in this runtime: concurrent calls with one key run one
//! after the other, so the second finds the first's key stored and returns its outcome instead
//! of deciding again. (Across runtimes the database's unique key does the same.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

type Key = (String, String);

#[derive(Default)]
pub(crate) struct KeyLocks {
    locks: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while a keyed call runs; the next call with its key goes on when it is dropped.
pub(crate) struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: Key,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    pub async fn lock(&self, user_id: &str, key: &str) -> KeyGuard<'_> {
        let key = (user_id.to_owned(), key.to_owned());
        let lock = self.map().entry(key.clone()).or_default().clone();
        KeyGuard {
            locks: self,
            key,
            guard: Some(lock.lock_owned().await),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<tokio::sync::Mutex<()>>>> {
        // Only inserts and removes under it: a panic cannot leave it half-changed.
        self.locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many keys are locked or waited for (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        // The map's own reference is the last one: nobody holds or waits for the key.
        if map
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_call_with_a_key_waits_for_the_first_and_the_map_empties() {
        let locks = KeyLocks::default();
        let first = locks.lock("u", "k").await;
        let other_user = locks.lock("v", "k").await;
        let mut second = Box::pin(locks.lock("u", "k"));
        assert!(futures::poll!(&mut second).is_pending());
        drop(first);
        let second = second.await;
        assert_eq!(locks.len(), 2);
        drop(second);
        drop(other_user);
        assert_eq!(locks.len(), 0);
    }
}
